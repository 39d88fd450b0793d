package main

// The manifests under deploy/ cannot run here (no Docker engine, no
// cluster), so they are checked against the binary itself: every causeway
// subcommand and flag they use exists in its command tree, every CAUSEWAY_*
// variable is a configuration key and its value is accepted, every port is
// the one the role listens on, and every image is pinned.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/causeway/causeway/cmd/causeway/internal/config"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// comingSubcommands are used by the manifests before the binary has them.
// Once a subcommand exists its flags are checked like any other's.
var comingSubcommands = map[string]string{"rollup": "issue 5 (read receipts and the rollup)"}

// edgeDrainFixed is the part of an edge's SIGTERM drain that no setting
// changes: up to 5s of HTTP shutdown (edge.Server.Run), then per client,
// after its queue is flushed (up to edge.write_timeout), a close frame
// written and the close handshake awaited, 5s each (coder/websocket
// Conn.Close). The grace period of an edge must cover it plus the write
// timeout.
const edgeDrainFixed = 15 * time.Second

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
		if why, ok := comingSubcommands[args[0]]; ok {
			t.Logf("%s: %q is not in the binary yet (coming: %s); its flags are checked once it is", where, args[0], why)
			return args[0], nil
		}
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

// TestDeployCompose checks deploy/compose: the stack's services, their
// commands, settings and ports, and Prometheus and Grafana wiring.
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

	roles := map[string][]string{} // subcommand -> services
	scrapePort := map[string]int{} // service -> port its metrics are served on
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
		for k, v := range env {
			if strings.Contains(v, "${") {
				env[k] = "placeholder-0123456789abcdef0123456789abcdef"
			}
		}
		c := checkEnv(t, where, env)
		sub, flags := checkArgs(t, where, strs(get(svc, "command")))
		roles[sub] = append(roles[sub], name)
		switch sub {
		case "edge":
			if flags["id"] != name {
				t.Errorf("%s: edge --id %q, want the service name", where, flags["id"])
			}
			host, _, _ := net.SplitHostPort(c.Edge.HTTPAddr)
			p := port(t, where, c.Edge.HTTPAddr)
			if host != "0.0.0.0" && host != "" {
				t.Errorf("%s: edge.http_addr %s is not reachable from other containers", where, c.Edge.HTTPAddr)
			}
			published := strs(get(svc, "ports"))
			if len(published) != 1 || !strings.HasSuffix(published[0], ":"+strconv.Itoa(p)) {
				t.Errorf("%s: publishes %v, the edge listens on %d", where, published, p)
			}
			scrapePort[name] = p
			g, err := time.ParseDuration(str(get(svc, "stop_grace_period")))
			if need := edgeDrainFixed + c.Edge.WriteTimeout; err != nil || g < need {
				t.Errorf("%s: stop_grace_period %q, the drain takes up to %s", where, str(get(svc, "stop_grace_period")), need)
			}
			edgeGrace = g
		case "sequencer":
			if flags["id"] != name {
				t.Errorf("%s: sequencer --id %q, want the service name", where, flags["id"])
			}
			scrapePort[name] = port(t, where, flags["metrics-addr"])
		case "rollup":
			for _, a := range strs(get(svc, "command")) {
				if strings.HasPrefix(a, "0.0.0.0:") {
					scrapePort[name] = port(t, where, a)
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
		for _, b := range c.Kafka.Brokers {
			if h, p, _ := net.SplitHostPort(b); services[h] == nil || p != "9092" {
				t.Errorf("%s: kafka.brokers %s is not a compose Kafka listener", where, b)
			}
		}
	}
	if kafkaNodes != 3 || strings.Count(kafkaVoters, "@") != 3 {
		t.Errorf("%d Kafka nodes, voters %q: want a 3-node KRaft quorum", kafkaNodes, kafkaVoters)
	}
	for sub, n := range map[string]int{"edge": 3, "sequencer": 2, "rollup": 1, "topics create": 1} {
		if len(roles[sub]) != n {
			t.Errorf("%d %s services %v, want %d", len(roles[sub]), sub, roles[sub], n)
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

	// Prometheus scrapes every role on the port it serves metrics on,
	// under the job names the dashboard filters on.
	prom := yamlDocs(t, "../../deploy/compose/prometheus.yml")[0]
	scraped := map[string]bool{}
	jobs := map[string]bool{}
	for _, sc := range get(prom, "scrape_configs").([]any) {
		jobs[str(get(sc, "job_name"))] = true
		if p := str(get(sc, "metrics_path")); p != "/metrics" {
			t.Errorf("job %s scrapes %s", str(get(sc, "job_name")), p)
		}
		for _, target := range strs(get(sc, "static_configs", 0, "targets")) {
			h, p, _ := net.SplitHostPort(target)
			want, ok := scrapePort[h]
			if !ok || strconv.Itoa(want) != p {
				t.Errorf("prometheus target %s: the service serves metrics on %d (%v)", target, want, ok)
			}
			scraped[h] = true
		}
	}
	for svc := range scrapePort {
		if !scraped[svc] {
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
// ports and probes, Services, PodDisruptionBudgets and the kustomization.
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
		if o.kind() == "ConfigMap" {
			data := map[string]string{}
			for k, v := range get(o.doc, "data").(map[string]any) {
				data[k] = str(v)
			}
			configMaps[o.name()] = data
		}
	}

	type workload struct {
		obj    k8sObject
		sub    string
		labels map[string]any
		ports  map[string]int // name -> containerPort
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
		env := map[string]string{}
		for _, ef := range get(ctr, "envFrom").([]any) {
			cm := str(get(ef, "configMapRef", "name"))
			data, ok := configMaps[cm]
			if !ok {
				t.Errorf("%s: envFrom ConfigMap %q is not in the manifests", where, cm)
			}
			for k, v := range data {
				env[k] = v
			}
		}
		if l, ok := get(ctr, "env").([]any); ok {
			for _, e := range l {
				v := str(get(e, "value"))
				if get(e, "valueFrom") != nil {
					v = "from-the-platform-0123456789abcdef0123456789" // a pod name or a secret
				}
				env[str(get(e, "name"))] = v
			}
		}
		c := checkEnv(t, where, env)
		sub, flags := checkArgs(t, where, strs(get(ctr, "args")))
		ports := map[string]int{}
		if l, ok := get(ctr, "ports").([]any); ok {
			for _, p := range l {
				n, _ := strconv.Atoi(str(get(p, "containerPort")))
				ports[str(get(p, "name"))] = n
			}
		}
		probePort := func(probe string) int {
			p := get(ctr, probe, "httpGet", "port")
			if n, err := strconv.Atoi(str(p)); err == nil {
				return n
			}
			n, ok := ports[str(p)]
			if !ok {
				t.Errorf("%s: %s port %v is no container port", where, probe, p)
			}
			return n
		}
		var listen int
		switch sub {
		case "edge":
			listen = port(t, where, c.Edge.HTTPAddr)
			if h, _, _ := net.SplitHostPort(c.Edge.HTTPAddr); h != "0.0.0.0" && h != "" {
				t.Errorf("%s: edge.http_addr %s is not reachable from the Service", where, c.Edge.HTTPAddr)
			}
			if p := str(get(ctr, "readinessProbe", "httpGet", "path")); p != "/readyz" {
				t.Errorf("%s: readiness on %q, want /readyz", where, p)
			}
			if p := str(get(ctr, "livenessProbe", "httpGet", "path")); p != "/healthz" {
				t.Errorf("%s: liveness on %q, want /healthz", where, p)
			}
			grace, _ := strconv.Atoi(str(get(spec, "terminationGracePeriodSeconds")))
			if need := edgeDrainFixed + c.Edge.WriteTimeout; time.Duration(grace)*time.Second < need {
				t.Errorf("%s: terminationGracePeriodSeconds %d, the drain takes up to %s", where, grace, need)
			}
			if o.kind() != "Deployment" {
				t.Errorf("%s: edges are a Deployment", where)
			}
		case "sequencer":
			listen = port(t, where, flags["metrics-addr"])
			for _, probe := range []string{"readinessProbe", "livenessProbe"} {
				// The sequencer's metrics server serves /healthz
				// (sequencer.go); it has no /readyz.
				if p := str(get(ctr, probe, "httpGet", "path")); p != "/healthz" {
					t.Errorf("%s: %s on %q, want /healthz", where, probe, p)
				}
			}
			if o.kind() != "StatefulSet" {
				t.Errorf("%s: sequencers are a StatefulSet (stable instance IDs)", where)
			}
		case "topics create":
			if o.kind() != "Job" {
				t.Errorf("%s: topics create is a Job", where)
			}
		default:
			t.Errorf("%s: unexpected subcommand %q", where, sub)
		}
		if listen != 0 {
			if probePort("readinessProbe") != listen || probePort("livenessProbe") != listen {
				t.Errorf("%s: probes are not on the listen port %d", where, listen)
			}
			found := false
			for _, p := range ports {
				found = found || p == listen
			}
			if !found {
				t.Errorf("%s: listens on %d, container ports %v", where, listen, ports)
			}
			if a := str(get(o.doc, "spec", "template", "metadata", "annotations", "prometheus.io/port")); a != strconv.Itoa(listen) {
				t.Errorf("%s: prometheus.io/port %q, metrics are on %d", where, a, listen)
			}
		}
		labels, _ := get(o.doc, "spec", "template", "metadata", "labels").(map[string]any)
		workloads = append(workloads, workload{o, sub, labels, ports})
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
		case "PodDisruptionBudget":
			for _, w := range workloads {
				if selects(get(o.doc, "spec", "selector", "matchLabels"), w) {
					pdbs[w.sub] = true
				}
			}
		}
	}
	for _, sub := range []string{"edge", "sequencer"} {
		if !pdbs[sub] {
			t.Errorf("no PodDisruptionBudget covers the %s pods", sub)
		}
	}
	if len(workloads) != 3 {
		t.Errorf("%d workloads, want edge, sequencer and the topics Job", len(workloads))
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
		t.Errorf("Dockerfile does not EXPOSE the edge port %d and the sequencer metrics port 9100", defaultEdgePort(t))
	}
}
