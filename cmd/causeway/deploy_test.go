package main

// The manifests under deploy/ cannot run here (no Docker engine, no
// cluster), so they are checked against the binary itself: every causeway
// subcommand and flag they use exists in its command tree, every CAUSEWAY_*
// variable is a configuration key and its value is accepted, every port is
// the one the role listens on, every probe asks a path the role serves, no
// secret is written down, and every image is pinned.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/causeway/causeway/cmd/causeway/internal/config"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
	"golang.org/x/sync/errgroup"
)

// edgeDrainFixed is the part of an edge's SIGTERM drain that no setting
// changes: up to 5s of HTTP shutdown (edge.Server.Run), then per client,
// after its queue is flushed (up to edge.write_timeout), a close frame
// written and the close handshake awaited, 5s each (coder/websocket
// Conn.Close). The grace period of an edge must cover it plus the write
// timeout.
const edgeDrainFixed = 15 * time.Second

// instanceIDVars name each running instance of a long-running role: unique
// per replica and, for the sequencer and the rollup (whose IDs name Kafka
// transactional IDs), stable across its restarts.
var instanceIDVars = map[string]string{
	"edge":      "CAUSEWAY_EDGE_ID",
	"sequencer": "CAUSEWAY_SEQUENCER_INSTANCE_ID",
	"rollup":    "CAUSEWAY_ROLLUP_INSTANCE_ID",
}

// clickhouseRoles are the subcommands that talk to ClickHouse: only they
// get its password.
var clickhouseRoles = map[string]bool{"rollup": true, "migrate": true}

// roleFlagKeys are the settings the flags of the manifests' subcommands
// stand for, as the commands bind them (edge.go, sequencer.go, rollup.go,
// migrate.go, topics.go; --log-level in load): a flag in a manifest wins
// over the variable.
var roleFlagKeys = map[string]map[string]string{
	"edge":          {"brokers": "kafka.brokers", "http-addr": "edge.http_addr", "id": "edge.id"},
	"sequencer":     {"brokers": "kafka.brokers", "id": "sequencer.instance_id"},
	"rollup":        {"brokers": "kafka.brokers", "id": "rollup.instance_id"},
	"migrate":       {"clickhouse": "clickhouse.addr", "database": "clickhouse.database"},
	"topics create": {"brokers": "kafka.brokers", "replication-factor": "topics.create_replication_factor"},
}

// withFlags returns env with the flags given to sub as the variables of
// their settings, so that checkEnv loads what the command would run with.
func withFlags(t *testing.T, where, sub string, env, flags map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, v := range env {
		out[k] = v
	}
	for f, v := range flags {
		key, ok := roleFlagKeys[sub][f]
		if f == "log-level" {
			key, ok = "log.level", true
		}
		if !ok {
			continue
		}
		if _, ok := config.Defaults[key]; !ok {
			t.Errorf("%s: --%s stands for %s, which is no configuration key", where, f, key)
		}
		out["CAUSEWAY_"+strings.ToUpper(strings.ReplaceAll(key, ".", "_"))] = v
	}
	return out
}

// tracksReadiness are the roles whose /readyz follows something outside
// the process (an edge's heartbeats and drain, the rollup's ClickHouse):
// their readiness probes must ask it. The sequencer's /readyz is its
// /healthz (sequencer.go passes no readiness).
var tracksReadiness = map[string]bool{"edge": true, "rollup": true}

// isSecretVar reports whether a variable holds a credential: its value is
// never written in a manifest, only referred to (a Compose ${VAR:?...}
// interpolation, a Kubernetes secretKeyRef).
func isSecretVar(name string) bool {
	n := strings.ToUpper(name)
	return strings.Contains(n, "PASSWORD") || strings.Contains(n, "SECRET")
}

// requiredInterpolation is a Compose value taken from the environment of
// `docker compose` itself, with no default: ${VAR:?message}.
var requiredInterpolation = regexp.MustCompile(`^\$\{[A-Z_][A-Z0-9_]*:?\?[^}]*\}$`)

// yamlDocs parses every YAML document of a file into generic maps.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return docs
			}
			t.Fatalf("%s: not valid YAML: %v", path, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
}

// get walks a generic YAML/JSON value by map keys and list indexes.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func strs(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		out = append(out, str(x))
	}
	return out
}

// envKeys maps every CAUSEWAY_* variable the binary reads to its key.
func envKeys() map[string]string {
	m := map[string]string{}
	for k := range config.Defaults {
		m["CAUSEWAY_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))] = k
	}
	return m
}

// checkEnv checks that every CAUSEWAY_* variable is a key and that the
// binary's configuration loader accepts the values together, and returns
// the resulting config. Values the platform fills in (interpolations,
// fieldRefs, secrets) are given as placeholders of the right kind.
func checkEnv(t *testing.T, where string, env map[string]string) config.Config {
	t.Helper()
	keys := envKeys()
	doc := map[string]any{}
	for name, val := range env {
		if !strings.HasPrefix(name, "CAUSEWAY_") {
			continue
		}
		key, ok := keys[name]
		if !ok {
			t.Errorf("%s: %s is not a configuration key (README.md, Configuration)", where, name)
			continue
		}
		sec, leaf, _ := strings.Cut(key, ".")
		if doc[sec] == nil {
			doc[sec] = map[string]any{}
		}
		doc[sec].(map[string]any)[leaf] = val
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "env.yaml")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.NewLoader().Load(file)
	if err != nil {
		t.Errorf("%s: the binary refuses these settings: %v", where, err)
	}
	return c
}

// checkArgs checks that args (the container's command, without the
// binary) name an existing subcommand with existing flags and accepted
// arguments, and returns the flag values given.
func checkArgs(t *testing.T, where string, args []string) (sub string, flags map[string]string) {
	t.Helper()
	if len(args) == 0 {
		t.Errorf("%s: no causeway subcommand", where)
		return "", nil
	}
	root := newRoot()
	cmd, rest, err := root.Find(args)
	if err != nil || cmd == root {
		t.Errorf("%s: causeway %s: no such subcommand (%v)", where, strings.Join(args, " "), err)
		return "", nil
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Errorf("%s: causeway %s: %v", where, strings.Join(args, " "), err)
		return cmd.Name(), nil
	}
	if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
		t.Errorf("%s: causeway %s: %v", where, strings.Join(args, " "), err)
	}
	if !cmd.Runnable() {
		t.Errorf("%s: causeway %s: not a runnable command", where, strings.Join(args, " "))
	}
	flags = map[string]string{}
	cmd.Flags().Visit(func(f *pflag.Flag) { flags[f.Name] = f.Value.String() })
	return cmd.CommandPath()[len("causeway "):], flags
}

func port(t *testing.T, where, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	n, err2 := strconv.Atoi(p)
	if err != nil || err2 != nil {
		t.Errorf("%s: %q is not host:port", where, addr)
	}
	return n
}

// pinnedImage checks an image reference names a version: a tag that is
// not latest, or a digest.
func pinnedImage(t *testing.T, where, image string) {
	t.Helper()
	// ${VAR:-default} pins to its default.
	image = regexp.MustCompile(`\$\{[A-Z_]+:?-([^}]*)\}`).ReplaceAllString(image, "$1")
	if strings.Contains(image, "@sha256:") {
		return
	}
	name := image[strings.LastIndex(image, "/")+1:]
	_, tag, ok := strings.Cut(name, ":")
	if !ok || tag == "" || tag == "latest" || strings.Contains(image, "$") {
		t.Errorf("%s: image %q is not pinned (want a version tag or a digest, never latest)", where, image)
	}
}

func defaultEdgePort(t *testing.T) int {
	return port(t, "config.Defaults", config.Defaults["edge.http_addr"].(string))
}

// listener is one HTTP server of a role: its host and the paths it serves,
// each with its status while the role is not ready (0: not asked).
type listener struct {
	host  string
	paths map[string]int
}

// allInterfaces reports whether other hosts (kubelet, Prometheus, other
// containers) reach the listener.
func (l listener) allInterfaces() bool { return l.host == "" || l.host == "0.0.0.0" || l.host == "::" }

// edgePaths are what edge.Server serves on edge.http_addr (edge/server.go):
// /readyz is 503 while the edge drains or its heartbeats do not reach Kafka.
var edgePaths = map[string]int{"/v1/ws": 0, "/healthz": http.StatusOK, "/readyz": http.StatusServiceUnavailable, "/metrics": http.StatusOK}

var metricsServed struct {
	once  sync.Once
	paths map[string]int
	err   error
}

// metricsPaths asks serveMetrics (the sequencer's and the rollup's
// --metrics-addr, the edge's --admin-addr) what it serves while its role
// is not ready, as the rollup is while ClickHouse takes no writes.
func metricsPaths(t *testing.T) map[string]int {
	t.Helper()
	metricsServed.once.Do(func() {
		metricsServed.paths, metricsServed.err = askMetricsServer()
	})
	if metricsServed.err != nil {
		t.Fatalf("serveMetrics: %v", metricsServed.err)
	}
	return metricsServed.paths
}

func askMetricsServer() (map[string]int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	defer func() { cancel(); _ = g.Wait() }()
	if err := serveMetrics(gctx, g, addr, prometheus.NewRegistry(), false, func() bool { return false }); err != nil {
		return nil, err
	}
	c := &http.Client{Timeout: 5 * time.Second}
	paths := map[string]int{}
	for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
		resp, err := c.Get("http://" + addr + p)
		if err != nil {
			return nil, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			paths[p] = resp.StatusCode
		}
	}
	return paths, nil
}

// roleListeners are the HTTP servers a role's command runs, by port.
func roleListeners(t *testing.T, where, sub string, c config.Config, flags map[string]string) map[int]listener {
	t.Helper()
	ls := map[int]listener{}
	add := func(addr string, paths map[string]int) {
		if addr == "" {
			return
		}
		h, _, _ := net.SplitHostPort(addr)
		ls[port(t, where, addr)] = listener{h, paths}
	}
	switch sub {
	case "edge":
		add(c.Edge.HTTPAddr, edgePaths)
		add(flags["admin-addr"], metricsPaths(t))
	case "sequencer", "rollup":
		add(flags["metrics-addr"], metricsPaths(t))
	}
	return ls
}

// checkProbe checks that a probe (a Kubernetes one, or a Compose health
// check) of role sub asks a path that port serves. A readiness probe of a
// role with a readiness state asks /readyz; a liveness probe passes while
// the role is only not ready (restarting a draining edge, or a rollup
// whose ClickHouse is down, helps nothing); a probe from another host
// needs a listener on all interfaces.
func checkProbe(t *testing.T, where, probe, sub string, ls map[int]listener, p int, path string, liveness, remote bool) {
	t.Helper()
	l, ok := ls[p]
	if !ok {
		ports := []int{}
		for n := range ls {
			ports = append(ports, n)
		}
		sort.Ints(ports)
		t.Errorf("%s: %s on port %d, the %s listens on %v", where, probe, p, sub, ports)
		return
	}
	status, ok := l.paths[path]
	switch {
	case !ok:
		t.Errorf("%s: %s asks %s, which the %s does not serve on %d", where, probe, path, sub, p)
	case liveness && status != http.StatusOK:
		t.Errorf("%s: %s asks %s, which fails while the %s is only not ready: use /healthz", where, probe, path, sub)
	case !liveness && tracksReadiness[sub] && path != "/readyz":
		t.Errorf("%s: %s asks %s, want /readyz (the %s's readiness)", where, probe, path, sub)
	}
	if remote && !l.allInterfaces() {
		t.Errorf("%s: %s comes from outside the container, the %s listens on %s:%d only", where, probe, sub, l.host, p)
	}
}

// imageFiles are the paths the final stage of deploy/Dockerfile puts in
// the image, and its entrypoint.
func imageFiles(t *testing.T) (files map[string]bool, entrypoint string) {
	t.Helper()
	files = map[string]bool{}
	for _, l := range strings.Split(readFile(t, "../../deploy/Dockerfile"), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			files, entrypoint = map[string]bool{}, ""
		case "COPY", "ADD":
			files[f[len(f)-1]] = true
		case "ENTRYPOINT":
			entrypoint = strings.Join(f[1:], " ")
		}
	}
	return files, entrypoint
}

// TestDeployCompose checks deploy/compose: the stack's services, their
// commands, settings, ports and health checks, the ClickHouse wiring of
// the rollup and migrate, and Prometheus and Grafana wiring.
func TestDeployCompose(t *testing.T) {
	t.Parallel()
	docs := yamlDocs(t, "../../deploy/compose/docker-compose.yml")
	if len(docs) != 1 {
		t.Fatalf("docker-compose.yml: %d documents", len(docs))
	}
	services, _ := docs[0]["services"].(map[string]any)
	names := make([]string, 0, len(services))
	for n := range services {
		names = append(names, n)
	}
	sort.Strings(names)
	inImage, _ := imageFiles(t)

	type role struct {
		name  string
		c     config.Config
		flags map[string]string
		env   map[string]string // as written, before interpolation
	}
	roles := map[string][]role{}             // subcommand -> services
	scraped := map[string]map[int]listener{} // long-running service -> its listeners
	kafkaNodes := 0
	var kafkaVoters string
	var edgeGrace time.Duration
	for _, name := range names {
		svc := services[name]
		where := "compose service " + name
		image := str(get(svc, "image"))
		if image == "" {
			t.Errorf("%s: no image", where)
			continue
		}
		pinnedImage(t, where, image)
		env := map[string]string{}
		if m, ok := get(svc, "environment").(map[string]any); ok {
			for k, v := range m {
				env[k] = str(v)
			}
		}
		for k, v := range env {
			if isSecretVar(k) && !requiredInterpolation.MatchString(v) {
				t.Errorf("%s: %s is written down; take it from the environment: ${%s:?...}", where, k, k)
			}
		}
		switch {
		case strings.HasPrefix(image, "apache/kafka:"):
			kafkaNodes++
			if !strings.Contains(env["KAFKA_PROCESS_ROLES"], "controller") || env["KAFKA_LISTENERS"] != "PLAINTEXT://:9092,CONTROLLER://:9093" {
				t.Errorf("%s: not a KRaft broker+controller listening on 9092 (clients) and 9093 (controllers)", where)
			}
			if env["KAFKA_ADVERTISED_LISTENERS"] != "PLAINTEXT://"+name+":9092" {
				t.Errorf("%s: advertises %q", where, env["KAFKA_ADVERTISED_LISTENERS"])
			}
			kafkaVoters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
			continue
		case !strings.HasPrefix(image, "causeway:"):
			continue
		}
		if get(svc, "build", "dockerfile") != "deploy/Dockerfile" {
			t.Errorf("%s: not built from deploy/Dockerfile", where)
		}
		if get(svc, "profiles") != nil {
			t.Errorf("%s: in profiles %v, so `docker compose up` leaves it out", where, get(svc, "profiles"))
		}
		placed := map[string]string{}
		for k, v := range env {
			if strings.Contains(v, "${") {
				v = "placeholder-0123456789abcdef0123456789abcdef"
			}
			placed[k] = v
		}
		sub, flags := checkArgs(t, where, strs(get(svc, "command")))
		c := checkEnv(t, where, withFlags(t, where, sub, placed, flags))
		roles[sub] = append(roles[sub], role{name, c, flags, env})
		if _, ok := env["CAUSEWAY_CLICKHOUSE_PASSWORD"]; ok && !clickhouseRoles[sub] {
			t.Errorf("%s: gets the ClickHouse password, which only the rollup and migrate use", where)
		}
		if _, ok := instanceIDVars[sub]; ok && flags["id"] != name {
			t.Errorf("%s: %s --id %q, want the service name (unique, and the same after a restart)", where, sub, flags["id"])
		}

		// One-shots run to completion once; the roles run on, answer
		// their health check and are scraped.
		ls := roleListeners(t, where, sub, c, flags)
		if sub == "topics create" || sub == "migrate" {
			if r := str(get(svc, "restart")); r != "no" {
				t.Errorf("%s: restart %q; a one-shot that others wait for runs once: \"no\"", where, r)
			}
		} else {
			test := strs(get(svc, "healthcheck", "test"))
			if len(test) != 3 || test[0] != "CMD" || !inImage[test[1]] {
				t.Errorf("%s: health check %q, want [CMD, a probe in the image (deploy/Dockerfile), its /readyz URL]", where, test)
			} else if u, err := url.Parse(test[2]); err != nil || u.Scheme != "http" || (u.Hostname() != "127.0.0.1" && u.Hostname() != "localhost") || u.Path != "/readyz" {
				t.Errorf("%s: health check asks %q, want http://127.0.0.1:PORT/readyz", where, test[2])
			} else {
				p, _ := strconv.Atoi(u.Port())
				checkProbe(t, where, "health check", sub, ls, p, u.Path, false, false)
			}
			scraped[name] = ls
		}

		switch sub {
		case "edge":
			if h, _, _ := net.SplitHostPort(c.Edge.HTTPAddr); h != "0.0.0.0" && h != "" {
				t.Errorf("%s: edge.http_addr %s is not reachable from other containers", where, c.Edge.HTTPAddr)
			}
			p := port(t, where, c.Edge.HTTPAddr)
			published := strs(get(svc, "ports"))
			if len(published) != 1 || !strings.HasSuffix(published[0], ":"+strconv.Itoa(p)) {
				t.Errorf("%s: publishes %v, the edge listens on %d", where, published, p)
			}
			g, err := time.ParseDuration(str(get(svc, "stop_grace_period")))
			if need := edgeDrainFixed + c.Edge.WriteTimeout; err != nil || g < need {
				t.Errorf("%s: stop_grace_period %q, the drain takes up to %s", where, str(get(svc, "stop_grace_period")), need)
			}
			edgeGrace = g
		case "rollup":
			if !c.Rollup.ClickHouse {
				t.Errorf("%s: rollup.clickhouse is off: no analytics, and the migrate service for nothing", where)
			}
			for dep, cond := range map[string]string{"topics": "service_completed_successfully", "migrate": "service_completed_successfully"} {
				if got := str(get(svc, "depends_on", dep, "condition")); got != cond {
					t.Errorf("%s: depends on %s with %q, want %s", where, dep, got, cond)
				}
			}
		case "topics create":
			if c.Topics.CreateReplicationFactor > 3 {
				t.Errorf("%s: replication factor %d on 3 brokers", where, c.Topics.CreateReplicationFactor)
			}
			if str(get(svc, "depends_on", "kafka-1", "condition")) != "service_healthy" {
				t.Errorf("%s: does not wait for the brokers", where)
			}
		}
		if sub != "migrate" {
			for _, b := range c.Kafka.Brokers {
				if h, p, _ := net.SplitHostPort(b); services[h] == nil || p != "9092" {
					t.Errorf("%s: kafka.brokers %s is not a compose Kafka listener", where, b)
				}
			}
		}
	}
	if kafkaNodes != 3 || strings.Count(kafkaVoters, "@") != 3 {
		t.Errorf("%d Kafka nodes, voters %q: want a 3-node KRaft quorum", kafkaNodes, kafkaVoters)
	}
	for sub, n := range map[string]int{"edge": 3, "sequencer": 2, "rollup": 1, "topics create": 1, "migrate": 1} {
		if len(roles[sub]) != n {
			var got []string
			for _, r := range roles[sub] {
				got = append(got, r.name)
			}
			t.Errorf("%d %s services %v, want %d", len(got), sub, got, n)
		}
	}
	for _, want := range []string{"clickhouse", "prometheus", "grafana"} {
		if services[want] == nil {
			t.Errorf("no %s service", want)
		}
	}
	if edgeGrace == 0 {
		t.Error("no edge grace period checked")
	}

	// The rollup writes where migrate migrated, as the user the ClickHouse
	// service creates, once that service answers.
	if len(roles["rollup"]) == 1 && len(roles["migrate"]) == 1 {
		ch := func(r role) [4]string {
			return [4]string{r.c.ClickHouse.Addr, r.c.ClickHouse.Database, r.c.ClickHouse.Username, r.env["CAUSEWAY_CLICKHOUSE_PASSWORD"]}
		}
		ru, mg := ch(roles["rollup"][0]), ch(roles["migrate"][0])
		if ru != mg {
			t.Errorf("the rollup writes to %q, migrate migrates %q (address, database, user, password)", ru[:3], mg[:3])
		}
		h, p, _ := net.SplitHostPort(mg[0])
		chSvc := services[h]
		chEnv := map[string]string{"CLICKHOUSE_USER": "default"}
		if m, ok := get(chSvc, "environment").(map[string]any); ok {
			for k, v := range m {
				chEnv[k] = str(v)
			}
		}
		switch {
		case !strings.HasPrefix(str(get(chSvc, "image")), "clickhouse/clickhouse-server:") || p != "9000":
			t.Errorf("clickhouse.addr %s is not a compose ClickHouse's native port (9000)", mg[0])
		case chEnv["CLICKHOUSE_USER"] != mg[2] || chEnv["CLICKHOUSE_PASSWORD"] != mg[3]:
			t.Errorf("service %s creates user %q with password %q; migrate and the rollup log in as %q with %q", h, chEnv["CLICKHOUSE_USER"], chEnv["CLICKHOUSE_PASSWORD"], mg[2], mg[3])
		case get(chSvc, "healthcheck", "test") == nil:
			t.Errorf("service %s has no health check for migrate to wait on", h)
		}
		if got := str(get(services[roles["migrate"][0].name], "depends_on", h, "condition")); got != "service_healthy" {
			t.Errorf("migrate depends on %s with %q, want service_healthy", h, got)
		}
	}

	// Prometheus scrapes every role on a port it serves metrics on, under
	// the job names the dashboard filters on.
	prom := yamlDocs(t, "../../deploy/compose/prometheus.yml")[0]
	targets := map[string]bool{}
	jobs := map[string]bool{}
	for _, sc := range get(prom, "scrape_configs").([]any) {
		jobs[str(get(sc, "job_name"))] = true
		path := str(get(sc, "metrics_path"))
		if path != "/metrics" {
			t.Errorf("job %s scrapes %s", str(get(sc, "job_name")), path)
		}
		for _, target := range strs(get(sc, "static_configs", 0, "targets")) {
			h, p, _ := net.SplitHostPort(target)
			n, _ := strconv.Atoi(p)
			l, ok := scraped[h][n]
			if _, served := l.paths[path]; !ok || !served || !l.allInterfaces() {
				t.Errorf("prometheus target %s: service %s does not serve %s there to other containers", target, h, path)
			}
			targets[h] = true
		}
	}
	for svc := range scraped {
		if !targets[svc] {
			t.Errorf("prometheus does not scrape %s", svc)
		}
	}
	for _, j := range []string{"causeway-edge", "causeway-sequencer", "causeway-rollup"} {
		if !jobs[j] || !strings.Contains(readFile(t, "../../deploy/grafana/causeway.json"), `"query": "`+j+`"`) {
			t.Errorf("job %s is not both scraped and the dashboard's default", j)
		}
	}

	// Grafana gets the dashboard directory and a provider reading it.
	vols := strings.Join(strs(get(services["grafana"], "volumes")), " ")
	if !strings.Contains(vols, "../grafana:/var/lib/grafana/dashboards") || !strings.Contains(vols, "./grafana/provisioning:/etc/grafana/provisioning") {
		t.Errorf("grafana volumes %q", vols)
	}
	prov := yamlDocs(t, "../../deploy/compose/grafana/provisioning/dashboards/causeway.yml")[0]
	if str(get(prov, "providers", 0, "options", "path")) != "/var/lib/grafana/dashboards" {
		t.Errorf("dashboard provider reads %v", get(prov, "providers", 0, "options", "path"))
	}
	ds := yamlDocs(t, "../../deploy/compose/grafana/provisioning/datasources/prometheus.yml")[0]
	if str(get(ds, "datasources", 0, "type")) != "prometheus" || str(get(ds, "datasources", 0, "url")) != "http://prometheus:9090" {
		t.Errorf("datasource %v", get(ds, "datasources", 0))
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type k8sObject struct {
	file string
	doc  map[string]any
}

func (o k8sObject) kind() string { return str(o.doc["kind"]) }
func (o k8sObject) name() string { return str(get(o.doc, "metadata", "name")) }

// TestDeployK8s checks deploy/k8s: workloads, their commands, settings,
// ports, probes and instance IDs, where secrets come from, the ClickHouse
// wiring of the rollup and the migrate Job, Services, PodDisruptionBudgets
// and the kustomization.
func TestDeployK8s(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../../deploy/k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var objs []k8sObject
	var kust map[string]any
	for _, f := range files {
		for _, d := range yamlDocs(t, f) {
			if str(d["kind"]) == "Kustomization" {
				kust = d
				continue
			}
			if str(d["apiVersion"]) == "" || str(d["kind"]) == "" || str(get(d, "metadata", "name")) == "" {
				t.Errorf("%s: an object without apiVersion, kind or name", f)
			}
			objs = append(objs, k8sObject{filepath.Base(f), d})
		}
	}
	if kust == nil {
		t.Fatal("no kustomization.yaml")
	}
	listed := map[string]bool{}
	for _, r := range strs(kust["resources"]) {
		listed[r] = true
	}
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && !listed[b] {
			t.Errorf("kustomization.yaml does not list %s", b)
		}
	}
	for _, img := range get(kust, "images").([]any) {
		pinnedImage(t, "kustomization images", str(get(img, "name"))+":"+str(get(img, "newTag")))
	}

	configMaps := map[string]map[string]string{}
	for _, o := range objs {
		switch o.kind() {
		case "ConfigMap":
			data := map[string]string{}
			for k, v := range get(o.doc, "data").(map[string]any) {
				data[k] = str(v)
				if isSecretVar(k) {
					t.Errorf("ConfigMap %s holds %s: a secret belongs in a Secret", o.name(), k)
				}
			}
			configMaps[o.name()] = data
		case "Secret":
			t.Errorf("%s: Secret %s is committed; create it by hand (deploy/README.md)", o.file, o.name())
		}
	}

	type workload struct {
		obj    k8sObject
		sub    string
		labels map[string]any
		ports  map[string]int // name -> containerPort
		c      config.Config
		from   map[string]string // variable -> where its value comes from
	}
	var workloads []workload
	for _, o := range objs {
		spec := get(o.doc, "spec", "template", "spec")
		if spec == nil {
			continue
		}
		where := o.file + " " + o.kind() + "/" + o.name()
		if get(spec, "securityContext", "runAsNonRoot") != true {
			t.Errorf("%s: pods may run as root", where)
		}
		containers := get(spec, "containers").([]any)
		if len(containers) != 1 {
			t.Errorf("%s: %d containers, want 1", where, len(containers))
		}
		ctr := containers[0]
		pinnedImage(t, where, str(get(ctr, "image")))
		if get(ctr, "securityContext", "allowPrivilegeEscalation") != false || get(ctr, "securityContext", "readOnlyRootFilesystem") != true {
			t.Errorf("%s: container may escalate or write its root filesystem", where)
		}
		// The settings, and where each comes from: "" (written here),
		// configmap:NAME, secret:NAME/KEY or field:PATH.
		env := map[string]string{}
		from := map[string]string{}
		for _, ef := range get(ctr, "envFrom").([]any) {
			cm := str(get(ef, "configMapRef", "name"))
			data, ok := configMaps[cm]
			if !ok {
				t.Errorf("%s: envFrom ConfigMap %q is not in the manifests", where, cm)
			}
			for k, v := range data {
				env[k], from[k] = v, "configmap:"+cm
			}
		}
		if l, ok := get(ctr, "env").([]any); ok {
			for _, e := range l {
				name := str(get(e, "name"))
				env[name], from[name] = str(get(e, "value")), ""
				if vf := get(e, "valueFrom"); vf != nil {
					env[name] = "from-the-platform-0123456789abcdef0123456789" // a pod name or a secret
					switch {
					case get(vf, "secretKeyRef") != nil:
						from[name] = "secret:" + str(get(vf, "secretKeyRef", "name")) + "/" + str(get(vf, "secretKeyRef", "key"))
					case get(vf, "fieldRef") != nil:
						from[name] = "field:" + str(get(vf, "fieldRef", "fieldPath"))
					default:
						from[name] = "other"
					}
				}
			}
		}
		for k := range env {
			if isSecretVar(k) && !strings.HasPrefix(from[k], "secret:") {
				t.Errorf("%s: %s is not from a Secret (secretKeyRef)", where, k)
			}
		}
		sub, flags := checkArgs(t, where, strs(get(ctr, "args")))
		c := checkEnv(t, where, withFlags(t, where, sub, env, flags))
		if _, ok := env["CAUSEWAY_CLICKHOUSE_PASSWORD"]; ok && !clickhouseRoles[sub] {
			t.Errorf("%s: gets the ClickHouse password, which only the rollup and migrate use", where)
		}
		if v, ok := instanceIDVars[sub]; ok && (from[v] != "field:metadata.name" || flags["id"] != "") {
			t.Errorf("%s: %s from %q, --id %q: want the pod name (fieldRef metadata.name), unique per replica", where, v, from[v], flags["id"])
		}
		ports := map[string]int{}
		if l, ok := get(ctr, "ports").([]any); ok {
			for _, p := range l {
				n, _ := strconv.Atoi(str(get(p, "containerPort")))
				ports[str(get(p, "name"))] = n
			}
		}
		containerPort := func(what string, p any) int {
			n, err := strconv.Atoi(str(p))
			if err != nil {
				n = ports[str(p)]
			}
			for _, cp := range ports {
				if cp == n {
					return n
				}
			}
			t.Errorf("%s: %s port %v is no container port", where, what, p)
			return n
		}

		// Long-running roles: probes and the scrape annotation on ports
		// they serve from all interfaces.
		if ls := roleListeners(t, where, sub, c, flags); len(ls) > 0 {
			for _, probe := range []string{"readinessProbe", "livenessProbe"} {
				if get(ctr, probe, "httpGet") == nil {
					t.Errorf("%s: no %s over HTTP", where, probe)
					continue
				}
				p := containerPort(probe, get(ctr, probe, "httpGet", "port"))
				checkProbe(t, where, probe, sub, ls, p, str(get(ctr, probe, "httpGet", "path")), probe == "livenessProbe", true)
			}
			ann := func(k string) string {
				return str(get(o.doc, "spec", "template", "metadata", "annotations", "prometheus.io/"+k))
			}
			p := containerPort("prometheus.io/port", ann("port"))
			if l, ok := ls[p]; ann("scrape") != "true" || !ok || l.paths[ann("path")] != http.StatusOK || !l.allInterfaces() {
				t.Errorf("%s: prometheus.io scrape %q, port %q, path %q: not where the %s serves its metrics", where, ann("scrape"), ann("port"), ann("path"), sub)
			}
		}
		switch sub {
		case "edge":
			grace, _ := strconv.Atoi(str(get(spec, "terminationGracePeriodSeconds")))
			if need := edgeDrainFixed + c.Edge.WriteTimeout; time.Duration(grace)*time.Second < need {
				t.Errorf("%s: terminationGracePeriodSeconds %d, the drain takes up to %s", where, grace, need)
			}
			if o.kind() != "Deployment" {
				t.Errorf("%s: edges are a Deployment", where)
			}
		case "sequencer", "rollup":
			if o.kind() != "StatefulSet" {
				t.Errorf("%s: %ss are a StatefulSet (instance IDs stable across restarts)", where, sub)
			}
			if sub == "rollup" && !c.Rollup.ClickHouse {
				t.Errorf("%s: rollup.clickhouse is off: no analytics, and the migrate Job for nothing", where)
			}
		case "topics create", "migrate":
			if o.kind() != "Job" {
				t.Errorf("%s: %s is a Job", where, sub)
			}
			if rp := str(get(spec, "restartPolicy")); rp != "OnFailure" && rp != "Never" {
				t.Errorf("%s: restartPolicy %q", where, rp)
			}
			if n := get(o.doc, "spec", "parallelism"); sub == "migrate" && n != nil && str(n) != "1" {
				t.Errorf("%s: parallelism %v: migrations must not race", where, n)
			}
		default:
			t.Errorf("%s: unexpected subcommand %q", where, sub)
		}
		labels, _ := get(o.doc, "spec", "template", "metadata", "labels").(map[string]any)
		workloads = append(workloads, workload{o, sub, labels, ports, c, from})
	}

	selects := func(sel any, w workload) bool {
		m, ok := sel.(map[string]any)
		if !ok || len(m) == 0 {
			return false
		}
		for k, v := range m {
			if str(w.labels[k]) != str(v) {
				return false
			}
		}
		return true
	}
	pdbs := map[string]bool{}
	headless := map[string]string{} // headless Service -> the workload it selects
	for _, o := range objs {
		switch o.kind() {
		case "Service":
			var target *workload
			for i := range workloads {
				if selects(get(o.doc, "spec", "selector"), workloads[i]) {
					target = &workloads[i]
				}
			}
			if target == nil {
				t.Errorf("Service %s selects no workload", o.name())
				continue
			}
			for _, p := range get(o.doc, "spec", "ports").([]any) {
				tp := str(get(p, "targetPort"))
				if _, ok := target.ports[tp]; !ok {
					t.Errorf("Service %s: targetPort %s is not a port of %s", o.name(), tp, target.obj.name())
				}
			}
			if str(get(o.doc, "spec", "clusterIP")) == "None" {
				headless[o.name()] = target.obj.name()
			}
		case "PodDisruptionBudget":
			for _, w := range workloads {
				if selects(get(o.doc, "spec", "selector", "matchLabels"), w) {
					pdbs[w.sub] = true
				}
			}
		}
	}
	bySub := map[string][]workload{}
	for _, w := range workloads {
		bySub[w.sub] = append(bySub[w.sub], w)
		if w.obj.kind() == "StatefulSet" {
			if svc := str(get(w.obj.doc, "spec", "serviceName")); headless[svc] != w.obj.name() {
				t.Errorf("StatefulSet %s: serviceName %q is not a headless Service selecting its pods", w.obj.name(), svc)
			}
		}
	}
	for _, sub := range []string{"edge", "sequencer", "rollup"} {
		if !pdbs[sub] {
			t.Errorf("no PodDisruptionBudget covers the %s pods", sub)
		}
	}
	for _, sub := range []string{"edge", "sequencer", "rollup", "topics create", "migrate"} {
		if len(bySub[sub]) != 1 {
			t.Errorf("%d %s workloads, want 1", len(bySub[sub]), sub)
		}
	}
	if len(workloads) != 5 {
		t.Errorf("%d workloads, want edge, sequencer, rollup and the topics and migrate Jobs", len(workloads))
	}

	// The rollup writes where the migrate Job migrated, with the same
	// credentials, and not to the default (a developer's local server).
	if len(bySub["rollup"]) == 1 && len(bySub["migrate"]) == 1 {
		ru, mg := bySub["rollup"][0], bySub["migrate"][0]
		if ru.c.ClickHouse != mg.c.ClickHouse || ru.from["CAUSEWAY_CLICKHOUSE_PASSWORD"] != mg.from["CAUSEWAY_CLICKHOUSE_PASSWORD"] {
			t.Errorf("the rollup writes to %s/%s as %s (password %s), the migrate Job migrates %s/%s as %s (password %s)",
				ru.c.ClickHouse.Addr, ru.c.ClickHouse.Database, ru.c.ClickHouse.Username, ru.from["CAUSEWAY_CLICKHOUSE_PASSWORD"],
				mg.c.ClickHouse.Addr, mg.c.ClickHouse.Database, mg.c.ClickHouse.Username, mg.from["CAUSEWAY_CLICKHOUSE_PASSWORD"])
		}
		if mg.c.ClickHouse.Addr == config.Defaults["clickhouse.addr"] {
			t.Errorf("clickhouse.addr is the default %s (scripts/clickhouse.sh): set CAUSEWAY_CLICKHOUSE_ADDR", mg.c.ClickHouse.Addr)
		}
	}
}

// TestDeployDockerfile checks the image recipe: a pinned builder at least
// as new as go.mod asks, a static build of this binary, a non-root final
// stage, and the ports the manifests use.
func TestDeployDockerfile(t *testing.T) {
	t.Parallel()
	df := readFile(t, "../../deploy/Dockerfile")
	var froms []string
	var user string
	for _, l := range strings.Split(df, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, f[1])
			user = "" // USER is per stage
		case "USER":
			user = f[1]
		}
	}
	if len(froms) < 2 {
		t.Fatalf("not multi-stage: FROM %v", froms)
	}
	for _, img := range froms[:len(froms)-1] {
		pinnedImage(t, "Dockerfile", img)
	}
	if last := froms[len(froms)-1]; last != "scratch" && !strings.Contains(last, "distroless") {
		t.Errorf("final stage %s: want scratch or distroless", last)
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Errorf("final stage runs as %q, want a non-root user", user)
	}
	if !strings.Contains(df, "CGO_ENABLED=0") || !strings.Contains(df, "./cmd/causeway") {
		t.Error("not a static (CGO_ENABLED=0) build of ./cmd/causeway")
	}
	gomod := readFile(t, "../../go.mod")
	want := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)(?:\.(\d+))?`).FindStringSubmatch(gomod)
	got := regexp.MustCompile(`golang:(\d+)\.(\d+)(?:\.(\d+))?`).FindStringSubmatch(froms[0])
	if want == nil || got == nil {
		t.Fatalf("go.mod go %v, builder %s", want, froms[0])
	}
	for i := 1; i <= 3; i++ {
		g, _ := strconv.Atoi(got[i])
		w, _ := strconv.Atoi(want[i])
		if g != w {
			if g < w {
				t.Errorf("builder %s is older than go.mod's go %s", froms[0], want[0])
			}
			break
		}
	}
	if !strings.Contains(df, fmt.Sprintf("EXPOSE %d 9100", defaultEdgePort(t))) {
		t.Errorf("Dockerfile does not EXPOSE the edge port %d and the sequencer and rollup metrics port 9100", defaultEdgePort(t))
	}
	files, entrypoint := imageFiles(t)
	if !files["/causeway"] || entrypoint != `["/causeway"]` {
		t.Errorf("final stage holds %v with entrypoint %s, want the binary /causeway as the entrypoint", files, entrypoint)
	}
	if files["/healthcheck"] && !strings.Contains(df, "./deploy/healthcheck") {
		t.Error("/healthcheck is in the image but not built from ./deploy/healthcheck")
	}
}

// TestDeployHealthcheck builds deploy/healthcheck, the probe the Compose
// health checks run inside the (shell-less) image, and runs it: exit 0 on
// a 2xx answer, 1 on anything else (Docker reserves 2).
func TestDeployHealthcheck(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "healthcheck")
	if out, err := exec.Command("go", "build", "-o", bin, "../../deploy/healthcheck").CombinedOutput(); err != nil {
		t.Fatalf("go build ./deploy/healthcheck: %v\n%s", err, out)
	}
	status := func(code int) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }))
		t.Cleanup(s.Close)
		return s.URL + "/readyz"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/readyz"
	ln.Close()
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{status(http.StatusOK)}, 0},
		{[]string{status(http.StatusNoContent)}, 0},
		{[]string{status(http.StatusServiceUnavailable)}, 1},
		{[]string{status(http.StatusNotFound)}, 1},
		{[]string{closed}, 1},
		{nil, 1},
	} {
		err := exec.Command(bin, c.args...).Run()
		got := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			got = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("healthcheck %v: exit %d, want %d", c.args, got, c.want)
		}
	}
}
