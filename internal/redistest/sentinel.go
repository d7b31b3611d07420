package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// SentinelOptions shape a master, its replicas and the Sentinels that
// watch them.
type SentinelOptions struct {
	// Replicas is how many replicas the master has. Default 1; negative
	// means none.
	Replicas int
	// Sentinels is how many sentinel processes watch the master. Default
	// 3. The quorum that agrees the master is down is Sentinels/2+1.
	Sentinels int
	// DownAfter is down-after-milliseconds: how long the master may not
	// answer before a sentinel thinks it down. Default 1s (the production
	// default is 30s).
	DownAfter time.Duration
	// FailoverTimeout is failover-timeout; a failed attempt is retried
	// after twice this. Default 5s (the production default is 3 minutes).
	FailoverTimeout time.Duration
	// AOF and Fsync are as in Options, for the master and the replicas.
	AOF   bool
	Fsync string
}

// Sentinel is a master, its replicas and the Sentinels that watch them,
// all redis-server processes on loopback, stopped when the test ends.
type Sentinel struct {
	t    testing.TB
	opts SentinelOptions
	// Master is the master as started; after a failover it may be a
	// replica, or stopped.
	Master *Server
	// Replicas are the master's replicas as started; a failover promotes
	// one of them.
	Replicas []*Server
	// Sentinels are the `redis-server --sentinel` processes. Each is a
	// Server, so Stop, Freeze and Restart work on them (a restart keeps
	// the config file the sentinel rewrote).
	Sentinels []*Server
	// Name is the master's name in the Sentinels, "mymaster".
	Name string
}

// StartSentinel starts a master and its replicas, waits until every
// replica's link to the master is up, then starts the Sentinels and waits
// until each knows every replica and every other sentinel, so that a
// failover can start as soon as the master goes down.
func StartSentinel(t testing.TB, opts SentinelOptions) *Sentinel {
	t.Helper()
	if opts.Replicas < 0 {
		opts.Replicas = 0
	} else if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.Sentinels <= 0 {
		opts.Sentinels = 3
	}
	if opts.DownAfter <= 0 {
		opts.DownAfter = time.Second
	}
	if opts.FailoverTimeout <= 0 {
		opts.FailoverTimeout = 5 * time.Second
	}
	s := &Sentinel{t: t, opts: opts, Name: "mymaster"}
	// Redis 7.0 holds a diskless full sync 5s for more replicas to join
	// (repl-diskless-sync-delay); the replicas here all start at once.
	s.Master = Start(t, Options{AOF: opts.AOF, Fsync: opts.Fsync, Args: []string{"--repl-diskless-sync-delay", "0"}})
	for range opts.Replicas {
		s.Replicas = append(s.Replicas, Start(t, Options{
			AOF: opts.AOF, Fsync: opts.Fsync,
			Args: []string{"--replicaof", "127.0.0.1", strconv.Itoa(s.Master.Port)},
		}))
	}
	s.waitReplicasUp(30 * time.Second)
	quorum := opts.Sentinels/2 + 1
	for range opts.Sentinels {
		sn := &Server{t: t}
		sn.sentinelConf = func(port int) string {
			return strings.Join([]string{
				"port " + strconv.Itoa(port),
				"bind 127.0.0.1",
				"protected-mode no",
				"daemonize no",
				"dir " + sn.Dir,
				"logfile " + filepath.Join(sn.Dir, "redis.log"),
				"sentinel resolve-hostnames no",
				fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d", s.Name, s.Master.Port, quorum),
				fmt.Sprintf("sentinel down-after-milliseconds %s %d", s.Name, opts.DownAfter.Milliseconds()),
				fmt.Sprintf("sentinel failover-timeout %s %d", s.Name, opts.FailoverTimeout.Milliseconds()),
			}, "\n") + "\n"
		}
		sn.launch()
		s.Sentinels = append(s.Sentinels, sn)
	}
	s.waitDiscovered(30 * time.Second)
	return s
}

// waitReplicasUp waits until every replica reports master_link_status:up.
func (s *Sentinel) waitReplicasUp(timeout time.Duration) {
	s.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	for _, r := range s.Replicas {
		for {
			st, err := info(ctx, r.Addr(), "replication", "master_link_status")
			if err == nil && st == "up" {
				break
			}
			if time.Now().After(deadline) {
				s.t.Fatalf("redistest: replica %s: master_link_status %q, %v after %v; log: %s",
					r.Addr(), st, err, timeout, r.logTail())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// waitDiscovered waits until every sentinel sees the master up, every
// replica with its link to the master up, and every other sentinel.
func (s *Sentinel) waitDiscovered(timeout time.Duration) {
	s.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	var why string
	for time.Now().Before(deadline) {
		why = s.undiscovered(ctx)
		if why == "" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("redistest: the sentinels do not know each other and the replicas after %v: %s; log: %s",
		timeout, why, s.Sentinels[0].logTail())
}

// undiscovered says what one sentinel does not know yet ("" when all know
// everything).
func (s *Sentinel) undiscovered(ctx context.Context) string {
	for _, sn := range s.Sentinels {
		c := sentinelClient(sn)
		m, err := c.Master(ctx, s.Name).Result()
		if err != nil {
			c.Close()
			return fmt.Sprintf("sentinel %s: SENTINEL MASTER: %v", sn.Addr(), err)
		}
		if m["flags"] != "master" {
			c.Close()
			return fmt.Sprintf("sentinel %s: master flags %q", sn.Addr(), m["flags"])
		}
		replicas, err := c.Replicas(ctx, s.Name).Result()
		if err != nil {
			c.Close()
			return fmt.Sprintf("sentinel %s: SENTINEL REPLICAS: %v", sn.Addr(), err)
		}
		up := 0
		for _, r := range replicas {
			if r["flags"] == "slave" && r["master-link-status"] == "ok" {
				up++
			}
		}
		peers, err := c.Sentinels(ctx, s.Name).Result()
		c.Close()
		if err != nil {
			return fmt.Sprintf("sentinel %s: SENTINEL SENTINELS: %v", sn.Addr(), err)
		}
		if up != len(s.Replicas) {
			return fmt.Sprintf("sentinel %s knows %d replicas up, want %d", sn.Addr(), up, len(s.Replicas))
		}
		if len(peers) != len(s.Sentinels)-1 {
			return fmt.Sprintf("sentinel %s knows %d other sentinels, want %d", sn.Addr(), len(peers), len(s.Sentinels)-1)
		}
	}
	return ""
}

// sentinelClient is a client of one sentinel that does not retry.
func sentinelClient(sn *Server) *goredis.SentinelClient {
	return goredis.NewSentinelClient(&goredis.Options{Addr: sn.Addr(), MaxRetries: -1, DialTimeout: 300 * time.Millisecond})
}

// Addrs returns the sentinels' host:port, the seed list a failover client
// takes.
func (s *Sentinel) Addrs() []string {
	out := make([]string, len(s.Sentinels))
	for i, sn := range s.Sentinels {
		out[i] = sn.Addr()
	}
	return out
}

// MasterAddr asks the sentinels in turn for the master's address
// (SENTINEL get-master-addr-by-name) and returns the first answer.
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	var errs []error
	for _, sn := range s.Sentinels {
		if sn.cmd == nil {
			continue
		}
		addr, err := s.masterAddrFrom(ctx, sn)
		if err == nil {
			return addr, nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("redistest: no sentinel names the master %s: %w", s.Name, errors.Join(errs...))
}

// masterAddrFrom asks one sentinel for the master's address.
func (s *Sentinel) masterAddrFrom(ctx context.Context, sn *Server) (string, error) {
	c := sentinelClient(sn)
	defer c.Close()
	hp, err := c.GetMasterAddrByName(ctx, s.Name).Result()
	if err != nil {
		return "", fmt.Errorf("sentinel %s: %w", sn.Addr(), err)
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("sentinel %s: get-master-addr-by-name answered %q", sn.Addr(), hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// WaitMaster polls until a majority of the sentinels (of all of them, not
// only the running ones) name the same master, other than notAddr ("":
// any), and that server itself reports role:master. It returns the
// master's address; the test fails after timeout.
func (s *Sentinel) WaitMaster(notAddr string, timeout time.Duration) string {
	s.t.Helper()
	ctx := context.Background()
	majority := len(s.Sentinels)/2 + 1
	deadline := time.Now().Add(timeout)
	var why string
	for time.Now().Before(deadline) {
		votes := map[string]int{}
		var errs []string
		for _, sn := range s.Sentinels {
			if sn.cmd == nil {
				continue
			}
			addr, err := s.masterAddrFrom(ctx, sn)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			votes[addr]++
		}
		why = fmt.Sprintf("the sentinels name %v (errors: %v)", votes, errs)
		for addr, n := range votes {
			if n < majority || addr == notAddr {
				continue
			}
			role, err := info(ctx, addr, "replication", "role")
			if err == nil && role == "master" {
				return addr
			}
			why = fmt.Sprintf("the sentinels name %v, but %s has role %q (%v)", votes, addr, role, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("redistest: no master other than %q named by %d of %d sentinels after %v: %s; log: %s",
		notAddr, majority, len(s.Sentinels), timeout, why, s.Sentinels[0].logTail())
	return ""
}

// Client returns a failover client (go-redis NewFailoverClient) that finds
// the master through the sentinels, closed when the test ends.
func (s *Sentinel) Client() *goredis.Client {
	c := goredis.NewFailoverClient(&goredis.FailoverOptions{MasterName: s.Name, SentinelAddrs: s.Addrs()})
	s.t.Cleanup(func() { c.Close() })
	return c
}

// Server returns the data node (the master or a replica, as started) at
// addr; the test fails if there is none.
func (s *Sentinel) Server(addr string) *Server {
	s.t.Helper()
	for _, srv := range append([]*Server{s.Master}, s.Replicas...) {
		if srv.Addr() == addr {
			return srv
		}
	}
	s.t.Fatalf("redistest: %s is not a data node of the sentinel setup", addr)
	return nil
}
