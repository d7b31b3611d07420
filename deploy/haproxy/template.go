// Package haproxy renders Parley's HAProxy configuration from one template,
// haproxy.cfg.tmpl. The compose deployment's haproxy.cfg is the template
// rendered with [Compose]; the multi-process cluster test renders it with
// static loopback servers, so both run the same balancing, health-check and
// timeout rules.
package haproxy

import (
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"text/template"
	"time"
)

//go:embed haproxy.cfg.tmpl
var source string

var tmpl = template.Must(template.New("haproxy.cfg").Parse(source))

// Params are the parts of the configuration that differ between
// deployments. Exactly one of DNS and Servers is set.
type Params struct {
	// Bind is the frontend's listen address. Default ":8080", the port the
	// classic tutorial clients use.
	Bind string
	// MaxConn is the process-wide connection limit. Default 0: HAProxy
	// derives it from its open-file limit (each proxied WebSocket holds two
	// descriptors).
	MaxConn int
	// CheckInterval is the time between /readyz checks of a gateway.
	// Default 2s.
	CheckInterval time.Duration
	// Fall is how many failed checks mark a gateway down. Default 3, so a
	// draining gateway (readiness false at once) is marked down, and its
	// sessions cut, only after its 3 s spread of 1012 closes is over.
	Fall int
	// Rise is how many passed checks mark it up again. Default 2.
	Rise int
	// DNS finds gateways by resolving a service name, one server per
	// address, as Docker's embedded DNS answers for a scaled service.
	DNS *DNS
	// Servers lists gateway addresses (host:port) when there is no DNS.
	// A server that is not running yet is simply marked down until it
	// answers /readyz, so spare entries let a test add gateways later.
	Servers []string
}

// DNS describes gateway discovery through a resolver.
type DNS struct {
	// Service is the name to resolve. Default "gateway".
	Service string
	// Port is the gateways' port. Default 8080.
	Port int
	// Slots is the most gateways the load balancer will track. Default 16.
	Slots int
	// Nameserver is the resolver's address. Default "127.0.0.11:53",
	// Docker's embedded DNS.
	Nameserver string
}

// Compose returns the parameters of the docker compose deployment
// (deploy/haproxy/haproxy.cfg).
func Compose() Params {
	return Params{DNS: &DNS{}}
}

func (p Params) withDefaults() (Params, error) {
	if p.Bind == "" {
		p.Bind = ":8080"
	}
	if p.CheckInterval == 0 {
		p.CheckInterval = 2 * time.Second
	}
	if p.Fall == 0 {
		p.Fall = 3
	}
	if p.Rise == 0 {
		p.Rise = 2
	}
	if (p.DNS == nil) == (len(p.Servers) == 0) {
		return p, errors.New("haproxy: set exactly one of Params.DNS and Params.Servers")
	}
	if p.DNS != nil {
		d := *p.DNS
		if d.Service == "" {
			d.Service = "gateway"
		}
		if d.Port == 0 {
			d.Port = 8080
		}
		if d.Slots == 0 {
			d.Slots = 16
		}
		if d.Nameserver == "" {
			d.Nameserver = "127.0.0.11:53"
		}
		p.DNS = &d
	}
	for _, s := range p.Servers {
		if s == "" || strings.ContainsAny(s, " \t\n") {
			return p, fmt.Errorf("haproxy: bad server address %q", s)
		}
	}
	return p, nil
}

// Render returns the configuration for p.
func Render(p Params) (string, error) {
	p, err := p.withDefaults()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, struct {
		Params
		CheckInterval string
	}{p, durationText(p.CheckInterval)}); err != nil {
		return "", fmt.Errorf("haproxy: render: %w", err)
	}
	return b.String(), nil
}

// durationText writes d in HAProxy's time format (ms or s).
func durationText(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}
