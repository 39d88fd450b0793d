package config_test

import (
	"strings"
	"testing"

	"github.com/causeway/causeway/cmd/causeway/internal/config"
)

// kafka.sasl.* and kafka.tls.*: off by default, read from the file and the
// environment, the mechanism checked, the password kept as is and never
// put in an error.
func TestKafkaSecurityKeys(t *testing.T) {
	c, err := config.NewLoader().Load("")
	if err != nil {
		t.Fatal(err)
	}
	if k := c.Kafka; k.SASLMechanism != "none" || k.SASLUsername != "" || k.SASLPassword != "" || k.TLS || k.TLSCAFile != "" || k.TLSCertFile != "" || k.TLSKeyFile != "" || k.TLSServerName != "" {
		t.Fatalf("defaults %+v, want SASL and TLS off", k)
	}
	file := writeFile(t, "c.yaml", `
kafka:
  sasl:
    mechanism: SCRAM-SHA-256
    username: svc
  tls:
    enabled: true
    ca_file: /etc/ca.pem
    cert_file: /etc/c.pem
    key_file: /etc/k.pem
    server_name: kafka.internal
`)
	t.Setenv("CAUSEWAY_KAFKA_SASL_PASSWORD", " pass word ")
	c, err = config.NewLoader().Load(file)
	if err != nil {
		t.Fatal(err)
	}
	want := config.Kafka{Brokers: []string{"127.0.0.1:9092"}, ClientID: "causeway",
		SASLMechanism: "scram-sha-256", SASLUsername: "svc", SASLPassword: " pass word ",
		TLS: true, TLSCAFile: "/etc/ca.pem", TLSCertFile: "/etc/c.pem", TLSKeyFile: "/etc/k.pem", TLSServerName: "kafka.internal"}
	if got := c.Kafka; strings.Join(got.Brokers, ",") != "127.0.0.1:9092" || got.SASLMechanism != want.SASLMechanism ||
		got.SASLUsername != want.SASLUsername || got.SASLPassword != want.SASLPassword || got.TLS != want.TLS ||
		got.TLSCAFile != want.TLSCAFile || got.TLSCertFile != want.TLSCertFile || got.TLSKeyFile != want.TLSKeyFile ||
		got.TLSServerName != want.TLSServerName {
		t.Fatalf("kafka %+v, want %+v", got, want)
	}

	t.Setenv("CAUSEWAY_KAFKA_SASL_MECHANISM", "gssapi")
	_, err = config.NewLoader().Load("")
	checkBad(t, err, badCase{"kafka.sasl.mechanism", "gssapi", "one of none, plain, scram-sha-256, scram-sha-512"})
	t.Setenv("CAUSEWAY_KAFKA_SASL_MECHANISM", "plain")
	t.Setenv("CAUSEWAY_KAFKA_TLS_ENABLED", "sometimes")
	_, err = config.NewLoader().Load("")
	checkBad(t, err, badCase{"kafka.tls.enabled", "sometimes", "true or false"})

	t.Setenv("CAUSEWAY_KAFKA_TLS_ENABLED", "false")
	t.Setenv("CAUSEWAY_KAFKA_SASL_PASSWORD", "")
	_, err = config.NewLoader().Load(writeFile(t, "c.yaml", "kafka:\n  sasl:\n    password: [hunter2]\n"))
	if err == nil || !strings.Contains(err.Error(), "kafka.sasl.password") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("a password that is a list: %v, want an error naming the key without the value", err)
	}
}
