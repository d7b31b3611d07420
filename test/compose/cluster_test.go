package compose

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/parley-chat/parley/internal/clienttest"
)

const (
	clusterFile = "docker-compose.cluster.yml"
	clusterRoom = "e2e-cluster"
)

// composeFile is the part of a compose file these tests read.
type composeFile struct {
	Services map[string]map[string]any `json:"services"`
}

func readCompose(t *testing.T, name string) composeFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", name))
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return f
}

// TestClusterComposeFile checks docker-compose.cluster.yml against
// docker-compose.yml without Docker: deploy/images.sh reads only
// docker-compose.yml, so the cluster file may name no other base image;
// the gateways get the cluster's nodes as PARLEY_REDIS_CLUSTER and never
// PARLEY_REDIS, and start once redis-init completed; redis-init forms the
// cluster of exactly those nodes; and the gateway and lb services are
// docker-compose.yml's otherwise.
func TestClusterComposeFile(t *testing.T) {
	base, cl := readCompose(t, "docker-compose.yml"), readCompose(t, clusterFile)

	named := map[string]bool{}
	for _, svc := range base.Services {
		if img, ok := svc["image"].(string); ok {
			named[img] = true
		}
	}
	var nodes []string
	for name, svc := range cl.Services {
		img, _ := svc["image"].(string)
		if !named[img] && !strings.HasPrefix(img, "parley") {
			t.Errorf("%s: service %s names image %q, which docker-compose.yml does not: deploy/images.sh would not build its stand-in (name the same image, or teach deploy/images.sh the file)", clusterFile, name, img)
		}
		if cmd := fmt.Sprint(svc["command"]); strings.Contains(cmd, "--cluster-enabled yes") {
			nodes = append(nodes, name+":6379")
		}
	}
	slices.Sort(nodes)
	if len(nodes) != 6 {
		t.Fatalf("%s: %d cluster-enabled redis nodes %v, want 6 (3 masters, 3 replicas)", clusterFile, len(nodes), nodes)
	}

	gw, redisInit := cl.Services["gateway"], cl.Services["redis-init"]
	if gw == nil || redisInit == nil || cl.Services["lb"] == nil {
		t.Fatalf("%s: want services gateway, redis-init and lb", clusterFile)
	}
	env, _ := gw["environment"].(map[string]any)
	if _, ok := env["PARLEY_REDIS"]; ok {
		t.Errorf("the gateway has PARLEY_REDIS: it refuses it together with PARLEY_REDIS_CLUSTER")
	}
	seeds := strings.Split(fmt.Sprint(env["PARLEY_REDIS_CLUSTER"]), ",")
	slices.Sort(seeds)
	if !slices.Equal(seeds, nodes) {
		t.Errorf("the gateway's PARLEY_REDIS_CLUSTER is %v, want the nodes %v", env["PARLEY_REDIS_CLUSTER"], nodes)
	}
	initEnv, _ := redisInit["environment"].(map[string]any)
	formed := strings.Fields(strings.ReplaceAll(fmt.Sprint(initEnv["REDIS_NODES"]), ",", " "))
	slices.Sort(formed)
	if !slices.Equal(formed, nodes) || fmt.Sprint(initEnv["REDIS_REPLICAS"]) != "1" {
		t.Errorf("redis-init forms %v with %v replicas per master, want the nodes %v with 1", initEnv["REDIS_NODES"], initEnv["REDIS_REPLICAS"], nodes)
	}
	want := map[string]any{"redis-init": map[string]any{"condition": "service_completed_successfully"}}
	if !reflect.DeepEqual(gw["depends_on"], want) {
		t.Errorf("the gateway depends on %v, want %v", gw["depends_on"], want)
	}

	// Apart from how they reach Redis, gateway and lb are docker-compose.yml's.
	strip := func(svc map[string]any) map[string]any {
		out := map[string]any{}
		for k, v := range svc {
			out[k] = v
		}
		if svc["image"] == "parley-gateway:local" {
			delete(out, "depends_on")
		}
		if e, ok := svc["environment"].(map[string]any); ok {
			env := map[string]any{}
			for k, v := range e {
				if k != "PARLEY_REDIS" && k != "PARLEY_REDIS_CLUSTER" {
					env[k] = v
				}
			}
			out["environment"] = env
		}
		return out
	}
	for _, name := range []string{"gateway", "lb"} {
		if got, want := strip(cl.Services[name]), strip(base.Services[name]); !reflect.DeepEqual(got, want) {
			t.Errorf("service %s differs from docker-compose.yml's beyond Redis:\n%s: %v\ndocker-compose.yml: %v", name, clusterFile, got, want)
		}
	}
}

// clusterInfo is CLUSTER INFO as a map.
func clusterInfo(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m
}

// TestComposeCluster brings docker-compose.cluster.yml up under its own
// project (6 Redis Cluster nodes, the one-shot redis-init, 3 gateways,
// HAProxy), checks that the cluster formed with 3 masters and 3 replicas on
// the containers' addresses, sends a message through HAProxy from one
// WebSocket client and receives it with another on another gateway, and
// checks the message is in the cluster. It needs a gateway with
// --redis-cluster (PARLEY_REDIS_CLUSTER).
func TestComposeCluster(t *testing.T) {
	cmd := composeCommand(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, cmd: cmd, root: root, file: clusterFile, project: fmt.Sprintf("parley-e2e-cluster-%d", os.Getpid()), port: publishPort(t)}
	// Long enough for the image build when this test is the first to need it.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	buildImages(t, ctx, s)
	s.downOnCleanup()

	// up -d returns once redis-init completed (the gateways wait for it).
	start := time.Now()
	s.must(ctx, "up", "-d")
	upTook := time.Since(start)
	base := fmt.Sprintf("127.0.0.1:%d", s.port)
	url := "ws://" + base + "/ws"
	nodes := waitNodes(t, ctx, url, 3, time.Minute)
	t.Logf("compose up -d: %v (the cluster formed); 3 gateways answering through the load balancer after %v", upTook.Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond))

	info := clusterInfo(s.must(ctx, "exec", "-T", "redis-1", "redis-cli", "cluster", "info"))
	if info["cluster_state"] != "ok" || info["cluster_size"] != "3" || info["cluster_known_nodes"] != "6" || info["cluster_slots_ok"] != "16384" {
		t.Fatalf("CLUSTER INFO on redis-1: state %q, %q masters, %q nodes, %q slots ok; want ok, 3, 6, 16384",
			info["cluster_state"], info["cluster_size"], info["cluster_known_nodes"], info["cluster_slots_ok"])
	}
	// CLUSTER NODES: 3 masters with slots, 3 replicas, each on its own
	// container address (nothing announces loopback).
	var masters, replicas int
	addrs := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(s.must(ctx, "exec", "-T", "redis-1", "redis-cli", "cluster", "nodes")), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		addrs[addr] = true
		if strings.HasPrefix(addr, "127.") || strings.HasPrefix(addr, ":") {
			t.Errorf("node %s announces %s", f[0], addr)
		}
		switch {
		case strings.Contains(f[2], "fail"):
			t.Errorf("node %s (%s) is %s", f[0], addr, f[2])
		case strings.Contains(f[2], "master") && len(f) > 8:
			masters++
		case strings.Contains(f[2], "slave"):
			replicas++
		}
	}
	if masters != 3 || replicas != 3 || len(addrs) != 6 {
		t.Fatalf("CLUSTER NODES: %d masters with slots, %d replicas, %d addresses; want 3, 3, 6", masters, replicas, len(addrs))
	}
	t.Logf("cluster_state:ok, 3 masters, 3 replicas, addresses %v", slices.Sorted(maps.Keys(addrs)))

	// One sender; receivers until one is on another gateway than the
	// sender's (leastconn spreads them), so the message crosses gateways
	// through the cluster's sharded pub/sub.
	sender := clienttest.Dial(t, ctx, url, "alice", clusterRoom)
	ms := []*clienttest.Member{sender}
	var receiver *clienttest.Member
	for i := 0; receiver == nil; i++ {
		if i == 5 {
			t.Fatalf("5 receivers all landed on the sender's gateway %s (gateways seen: %v)", sender.Node(), nodes)
		}
		m := clienttest.Dial(t, ctx, url, fmt.Sprintf("bob%d", i), clusterRoom)
		ms = append(ms, m)
		if m.Node() != sender.Node() {
			receiver = m
		}
	}

	const body = "hello through the Redis Cluster"
	sent := time.Now()
	var seq int64
	for {
		// "unavailable" while a gateway still connects to the cluster:
		// resend with the same id, as a client does.
		ack, err := sender.Client.SendID(ctx, clusterRoom, "c1", body)
		if err == nil {
			seq = ack.Seq
			break
		}
		if time.Since(sent) > 30*time.Second {
			t.Fatalf("send: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The message is in the cluster. A gateway that ignored
	// PARLEY_REDIS_CLUSTER would have used its embedded memory broker:
	// acknowledged, but nothing stored, and no delivery across gateways.
	out := s.must(ctx, "exec", "-T", "redis-1", "redis-cli", "--cluster", "call", "redis-1:6379", "DBSIZE")
	counts := regexp.MustCompile(`(?m)^\S+:\d+: (\d+)\r?$`).FindAllStringSubmatch(out, -1)
	if len(counts) != 6 {
		t.Fatalf("redis-cli --cluster call DBSIZE: %d node counts in its output, want 6:\n%s", len(counts), out)
	}
	var keys int
	for _, m := range counts {
		n, _ := strconv.Atoi(m[1])
		keys += n
	}
	if keys == 0 {
		t.Fatalf("a message was acknowledged (seq %d) but the Redis Cluster holds no keys: the gateways do not use PARLEY_REDIS_CLUSTER (does this parley serve have --redis-cluster?)\n%s", seq, out)
	}

	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := receiver.WaitSeq(wctx, seq); err != nil {
		t.Fatalf("sent on %s, not received on %s: %v", sender.Node(), receiver.Node(), err)
	}
	t.Logf("sent on gateway %s, received on %s %v after the send", sender.Node(), receiver.Node(), receiver.At(seq).Sub(sent).Round(time.Millisecond))
	clienttest.WaitAll(t, wctx, ms, seq)
	for _, m := range ms {
		if m.Body(seq) != body {
			t.Errorf("%s got %q at seq %d", m.Name, m.Body(seq), seq)
		}
		m.Check(t, 1, seq)
	}
	hist, err := receiver.Client.History(ctx, clusterRoom, seq+1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 1 || hist[0].Body != body {
		t.Fatalf("history: %+v, want the one message", hist)
	}
	t.Logf("%d clients on %d gateways received it; history has it; whole test %v", len(ms), len(nodes), time.Since(start).Round(100*time.Millisecond))
}
