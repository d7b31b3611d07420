package gateway

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// clientAddr is the address a connection counts against for MaxConnsPerIP:
// its peer, or, when the peer is a trusted proxy, the last address of
// X-Forwarded-For (the one the proxy itself appended).
func (g *Gateway) clientAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	peer = peer.Unmap()
	if !g.trusted(peer) {
		return peer
	}
	xff := r.Header.Values("X-Forwarded-For")
	if len(xff) == 0 {
		return peer
	}
	parts := strings.Split(xff[len(xff)-1], ",")
	if a, err := netip.ParseAddr(strings.TrimSpace(parts[len(parts)-1])); err == nil {
		return a.Unmap()
	}
	return peer
}

func (g *Gateway) trusted(a netip.Addr) bool {
	for _, p := range g.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// admitAddr counts a new connection from addr in, unless addr holds
// MaxConnsPerIP already. Called with g.mu held.
func (g *Gateway) admitAddrLocked(addr netip.Addr) bool {
	if g.cfg.MaxConnsPerIP <= 0 || !addr.IsValid() {
		return true
	}
	if g.ips[addr] >= g.cfg.MaxConnsPerIP {
		return false
	}
	g.ips[addr]++
	return true
}

// admission is what one connection counts against the connection limits.
type admission struct {
	addr    netip.Addr // the client's address, counted against MaxConnsPerIP
	user    string     // the user after hello, counted against MaxConnsPerUser
	counted bool       // counted against MaxConnsPerUser (guarded by Gateway.mu)
}

// admitUser counts a in as a connection of user, unless the user holds
// MaxConnsPerUser on this node already.
func (g *Gateway) admitUser(a *admission, user string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cfg.MaxConnsPerUser > 0 && g.users[user] >= g.cfg.MaxConnsPerUser {
		return false
	}
	g.users[user]++
	a.user, a.counted = user, true
	return true
}

// releaseLocked counts a out of its user and address. Called with g.mu
// held.
func (g *Gateway) releaseLocked(c *admission) {
	if c.counted {
		if g.users[c.user]--; g.users[c.user] <= 0 {
			delete(g.users, c.user)
		}
	}
	g.releaseAddrLocked(c.addr)
}

// releaseAddrLocked counts one connection of addr out. Called with g.mu
// held.
func (g *Gateway) releaseAddrLocked(addr netip.Addr) {
	if g.cfg.MaxConnsPerIP > 0 && addr.IsValid() {
		if g.ips[addr]--; g.ips[addr] <= 0 {
			delete(g.ips, addr)
		}
	}
}
