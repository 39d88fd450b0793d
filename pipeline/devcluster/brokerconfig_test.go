package devcluster

import (
	"reflect"
	"testing"

	"github.com/causeway/causeway/pipeline"
)

// `causeway dev` with kafka.sasl.* set: the embedded broker has no users
// of its own, so it takes the roles' identity; a broker with users keeps
// exactly those.
func TestBrokerTakesRolesSASLIdentity(t *testing.T) {
	cfg := DefaultConfig(1, []byte("x"))
	sasl := pipeline.KafkaSASL{Mechanism: "scram-sha-512", Username: "dev", Password: "pw"}
	cfg.SetKafkaSecurity(sasl, pipeline.KafkaTLS{})
	bc, err := cfg.brokerConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := []pipeline.BrokerUser{{Mechanism: "scram-sha-512", Username: "dev", Password: "pw"}}
	if !reflect.DeepEqual(bc.Users, want) {
		t.Fatalf("broker users %+v, want %+v", bc.Users, want)
	}
	own := []pipeline.BrokerUser{{Mechanism: "plain", Username: "ops", Password: "x"}}
	cfg.Broker.Users = own
	if bc, err = cfg.brokerConfig(); err != nil || !reflect.DeepEqual(bc.Users, own) {
		t.Fatalf("broker users %+v, %v, want only %+v", bc.Users, err, own)
	}
	cfg.Broker.Users = nil
	cfg.Sequencer.Kafka.SASL.Password = ""
	if _, err := cfg.brokerConfig(); err == nil {
		t.Fatal("a role without a password passed")
	}
}
