package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// k8sDir is where the Kubernetes manifests live, from this package.
const k8sDir = "../../deploy/k8s"

// Names the checks look for in deploy/k8s.
const (
	k8sGateway       = "parley-gateway" // the Deployment, its Service, PDB, HPA and Ingress
	k8sGatewayBox    = "gateway"        // the gateway's container
	k8sSecretExample = "secret.example.yaml"
	k8sKustomization = "kustomization.yaml"
)

// kustomization is the part of kustomize's kustomization.yaml that the
// manifests use; any other field fails the strict decode.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
}

// k8sManifests is every document of every *.yaml under deploy/k8s,
// decoded strictly into its Kubernetes API type, by object name.
type k8sManifests struct {
	files        []string // base names of the *.yaml files read
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
	secrets      map[string]*corev1.Secret
	pdbs         map[string]*policyv1.PodDisruptionBudget
	hpas         map[string]*autoscalingv2.HorizontalPodAutoscaler
	ingresses    map[string]*networkingv1.Ingress
	kustomize    *kustomization
}

// loadK8s reads and decodes every *.yaml under dir.
func loadK8s(dir string) (*k8sManifests, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, fmt.Errorf("glob %s: %w", dir, err)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no *.yaml under %s", dir)
	}
	m := &k8sManifests{
		deployments:  map[string]*appsv1.Deployment{},
		statefulSets: map[string]*appsv1.StatefulSet{},
		services:     map[string]*corev1.Service{},
		secrets:      map[string]*corev1.Secret{},
		pdbs:         map[string]*policyv1.PodDisruptionBudget{},
		hpas:         map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		ingresses:    map[string]*networkingv1.Ingress{},
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read manifest: %w", err)
		}
		name := filepath.Base(p)
		m.files = append(m.files, name)
		docs := strings.Split("\n"+string(data), "\n---")
		for i, doc := range docs {
			if err := m.add([]byte(doc)); err != nil {
				return nil, fmt.Errorf("%s, document %d: %w", name, i+1, err)
			}
		}
	}
	return m, nil
}

// add decodes one YAML document (comments only: nothing) by its
// apiVersion and kind, strictly: an unknown kind or field is an error.
func (m *k8sManifests) add(doc []byte) error {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return fmt.Errorf("not YAML: %w", err)
	}
	if head.APIVersion == "" && head.Kind == "" {
		if j, err := yaml.YAMLToJSON(doc); err == nil && string(bytes.TrimSpace(j)) == "null" {
			return nil // only comments, or the part before a leading ---
		}
		return errors.New("a document without apiVersion and kind")
	}
	strict := func(obj any, name func() string, into func()) error {
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return fmt.Errorf("%s %s: %w", head.APIVersion, head.Kind, err)
		}
		if name() == "" {
			return fmt.Errorf("%s %s without metadata.name", head.APIVersion, head.Kind)
		}
		into()
		return nil
	}
	switch head.APIVersion + " " + head.Kind {
	case "apps/v1 Deployment":
		o := &appsv1.Deployment{}
		return strict(o, o.GetName, func() { m.deployments[o.Name] = o })
	case "apps/v1 StatefulSet":
		o := &appsv1.StatefulSet{}
		return strict(o, o.GetName, func() { m.statefulSets[o.Name] = o })
	case "v1 Service":
		o := &corev1.Service{}
		return strict(o, o.GetName, func() { m.services[o.Name] = o })
	case "v1 Secret":
		o := &corev1.Secret{}
		return strict(o, o.GetName, func() { m.secrets[o.Name] = o })
	case "policy/v1 PodDisruptionBudget":
		o := &policyv1.PodDisruptionBudget{}
		return strict(o, o.GetName, func() { m.pdbs[o.Name] = o })
	case "autoscaling/v2 HorizontalPodAutoscaler":
		o := &autoscalingv2.HorizontalPodAutoscaler{}
		return strict(o, o.GetName, func() { m.hpas[o.Name] = o })
	case "networking.k8s.io/v1 Ingress":
		o := &networkingv1.Ingress{}
		return strict(o, o.GetName, func() { m.ingresses[o.Name] = o })
	case "kustomize.config.k8s.io/v1beta1 Kustomization":
		o := &kustomization{}
		if err := yaml.UnmarshalStrict(doc, o); err != nil {
			return fmt.Errorf("Kustomization: %w", err)
		}
		m.kustomize = o
		return nil
	}
	return fmt.Errorf("unknown kind %q of apiVersion %q", head.Kind, head.APIVersion)
}

// gatewayContainer returns the gateway Deployment and its container.
func (m *k8sManifests) gatewayContainer() (*appsv1.Deployment, *corev1.Container, error) {
	d := m.deployments[k8sGateway]
	if d == nil {
		return nil, nil, fmt.Errorf("no Deployment %q", k8sGateway)
	}
	for i := range d.Spec.Template.Spec.Containers {
		if c := &d.Spec.Template.Spec.Containers[i]; c.Name == k8sGatewayBox {
			return d, c, nil
		}
	}
	return nil, nil, fmt.Errorf("Deployment %q has no container %q", k8sGateway, k8sGatewayBox)
}

// gatewayConfig runs the real parseServe on the gateway container's args
// and env, as the container would: every PARLEY_* variable of the test's
// own environment is cleared first, literal values are set as they are,
// and secretKeyRef values come from the example Secret (a required key it
// lacks is an error).
func (m *k8sManifests) gatewayConfig(t *testing.T, c *corev1.Container) (serveConfig, error) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "PARLEY_") {
			t.Setenv(k, "") // restored when the test ends
			os.Unsetenv(k)
		}
	}
	if len(c.Command) != 0 {
		return serveConfig{}, fmt.Errorf("gateway container sets command %q: the image's entrypoint is the parley binary; use args", c.Command)
	}
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		return serveConfig{}, fmt.Errorf("gateway container args %q: want serve first", c.Args)
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			t.Setenv(e.Name, e.Value)
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s := m.secrets[ref.Name]
			if s == nil {
				return serveConfig{}, fmt.Errorf("env %s: no Secret %q in %s", e.Name, ref.Name, k8sSecretExample)
			}
			v, ok := s.StringData[ref.Key]
			if !ok {
				if ref.Optional != nil && *ref.Optional {
					continue
				}
				return serveConfig{}, fmt.Errorf("env %s: Secret %q has no key %q (and the ref is not optional)", e.Name, ref.Name, ref.Key)
			}
			t.Setenv(e.Name, v)
		default:
			return serveConfig{}, fmt.Errorf("env %s: only value and secretKeyRef are understood", e.Name)
		}
	}
	var stderr bytes.Buffer
	cfg, _, ok := parseServe(c.Args[1:], &stderr)
	if !ok {
		return cfg, fmt.Errorf("parley serve refuses the gateway container's args and env: %s", strings.TrimSpace(stderr.String()))
	}
	return cfg, nil
}

// portOf resolves a probe's or Service's port (a number, or a name of one
// of c's ports) to a number; 0 when it names no port of c.
func portOf(c *corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return 0
}

// checkK8s applies every check to m and returns one clear line per
// problem found (none: the manifests agree with the gateway's flags).
func checkK8s(t *testing.T, m *k8sManifests) []string {
	var bad []string
	fail := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }

	d, c, err := m.gatewayContainer()
	if err != nil {
		return []string{err.Error()}
	}
	cfg, err := m.gatewayConfig(t, c)
	if err != nil {
		return []string{err.Error()}
	}
	_, portText, err := net.SplitHostPort(cfg.addr)
	if err != nil {
		return []string{fmt.Sprintf("gateway --addr %q: %v", cfg.addr, err)}
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return []string{fmt.Sprintf("gateway --addr %q: port is not a number", cfg.addr)}
	}
	pod := d.Spec.Template.Spec

	// The container listens where the gateway does.
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return int(p.ContainerPort) == port }) {
		fail("gateway container declares no containerPort %d, the port of --addr %q", port, cfg.addr)
	}

	// Probes: readiness /readyz (leaves the endpoints fast), liveness
	// /healthz (never /healthz/deep: Redis must not restart gateways).
	probe := func(what string, p *corev1.Probe, path string) {
		switch {
		case p == nil:
			fail("gateway container has no %s probe", what)
		case p.HTTPGet == nil:
			fail("gateway %s probe is not an httpGet", what)
		default:
			if p.HTTPGet.Path != path {
				fail("gateway %s probe GETs %q, want %q", what, p.HTTPGet.Path, path)
			}
			if got := portOf(c, p.HTTPGet.Port); int(got) != port {
				fail("gateway %s probe port %s is %d, but the gateway listens on %d (--addr %q)", what, p.HTTPGet.Port.String(), got, port, cfg.addr)
			}
		}
	}
	probe("readiness", c.ReadinessProbe, "/readyz")
	probe("liveness", c.LivenessProbe, "/healthz")
	if c.StartupProbe != nil {
		probe("startup", c.StartupProbe, "/healthz")
	}
	if r := c.ReadinessProbe; r != nil && (r.PeriodSeconds > 2 || r.FailureThreshold > 1) {
		fail("gateway readiness probe every %ds with failureThreshold %d: a draining pod must leave the endpoints within 2s (period ≤ 2, threshold 1)", r.PeriodSeconds, r.FailureThreshold)
	}

	// The drain fits in the grace period.
	var preStop time.Duration
	switch {
	case c.Lifecycle == nil || c.Lifecycle.PreStop == nil:
		fail("gateway container has no lifecycle.preStop: SIGTERM would start the drain while the pod still receives traffic")
	case c.Lifecycle.PreStop.Sleep == nil:
		fail("gateway preStop is not the sleep action (the image has no shell or sleep binary for exec)")
	default:
		preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		if preStop <= 0 {
			fail("gateway preStop sleeps %s: it must wait for the endpoints to drop the pod", preStop)
		}
	}
	grace := 30 * time.Second // the Kubernetes default
	if pod.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	}
	if grace <= preStop+cfg.drainTimeout {
		fail("terminationGracePeriodSeconds %s must exceed preStop sleep %s + drain timeout %s: the kubelet would kill the drain", grace, preStop, cfg.drainTimeout)
	}
	if cfg.drainSpread >= cfg.drainTimeout {
		fail("drain spread %s must be shorter than drain timeout %s", cfg.drainSpread, cfg.drainTimeout)
	}
	if l := c.LivenessProbe; l != nil {
		threshold := l.FailureThreshold
		if threshold == 0 {
			threshold = 3
		}
		period := l.PeriodSeconds
		if period == 0 {
			period = 10
		}
		if outlast := time.Duration(threshold*period) * time.Second; outlast <= preStop+cfg.drainTimeout {
			fail("gateway liveness fails after %s of no answer, within preStop %s + drain timeout %s (the listener closes at SIGTERM)", outlast, preStop, cfg.drainTimeout)
		}
	}

	// Non-root, read-only, with resources (the HPA needs a CPU request).
	if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		fail("gateway pod securityContext.runAsNonRoot is not true")
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		fail("gateway container securityContext.readOnlyRootFilesystem is not true")
	}
	if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
		fail("gateway container has no CPU request (the HPA's utilization is relative to it)")
	}
	if len(c.Resources.Limits) == 0 {
		fail("gateway container has no resource limits")
	}

	// PARLEY_REDIS names a Service and one of its ports.
	if u, err := url.Parse(cfg.redisURL); err != nil || u.Hostname() == "" {
		fail("gateway PARLEY_REDIS %q is not a redis:// URL", cfg.redisURL)
	} else if s := m.services[u.Hostname()]; s == nil {
		fail("gateway PARLEY_REDIS host %q is no Service of these manifests", u.Hostname())
	} else if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return strconv.Itoa(int(p.Port)) == u.Port() }) {
		fail("gateway PARLEY_REDIS port %q is not a port of Service %q", u.Port(), s.Name)
	}

	// Every Service selects the pods of some workload.
	podLabels := map[string]labels.Set{}
	for _, w := range m.deployments {
		podLabels["Deployment "+w.Name] = w.Spec.Template.Labels
		checkSelector(&bad, "Deployment "+w.Name, w.Spec.Selector, w.Spec.Template.Labels)
	}
	for _, w := range m.statefulSets {
		podLabels["StatefulSet "+w.Name] = w.Spec.Template.Labels
		checkSelector(&bad, "StatefulSet "+w.Name, w.Spec.Selector, w.Spec.Template.Labels)
		if w.Spec.ServiceName != "" && m.services[w.Spec.ServiceName] == nil {
			fail("StatefulSet %q names serviceName %q, which is no Service", w.Name, w.Spec.ServiceName)
		}
	}
	for _, s := range sortedKeys(m.services) {
		svc := m.services[s]
		if len(svc.Spec.Selector) == 0 {
			fail("Service %q has no selector", s)
			continue
		}
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		if !slices.ContainsFunc(sortedKeys(podLabels), func(w string) bool { return sel.Matches(podLabels[w]) }) {
			fail("Service %q selector %v matches no workload's pod labels", s, svc.Spec.Selector)
		}
	}

	// The gateway Service: to the container port, no affinity.
	if svc := m.services[k8sGateway]; svc == nil {
		fail("no Service %q", k8sGateway)
	} else {
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			fail("Service %q selector %v does not match the gateway pods' labels %v", k8sGateway, svc.Spec.Selector, d.Spec.Template.Labels)
		}
		if t := svc.Spec.Type; t != "" && t != corev1.ServiceTypeClusterIP {
			fail("Service %q is of type %s, want ClusterIP (the Ingress is the way in)", k8sGateway, t)
		}
		if a := svc.Spec.SessionAffinity; a != "" && a != corev1.ServiceAffinityNone {
			fail("Service %q has sessionAffinity %s: clients resume on any gateway, affinity only unbalances", k8sGateway, a)
		}
		if len(svc.Spec.Ports) == 0 {
			fail("Service %q has no ports", k8sGateway)
		}
		for _, p := range svc.Spec.Ports {
			target := p.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(p.Port) // the default
			}
			if got := portOf(c, target); int(got) != port {
				fail("Service %q port %d targets %s = %d, but the gateway listens on %d", k8sGateway, p.Port, target.String(), got, port)
			}
		}
	}

	// The PDB and the HPA are the gateway Deployment's.
	tolerance := 0
	if pdb := m.pdbs[k8sGateway]; pdb == nil {
		fail("no PodDisruptionBudget %q", k8sGateway)
	} else {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		switch {
		case pdb.Spec.Selector == nil || err != nil || sel.Empty():
			fail("PodDisruptionBudget %q has no usable selector (%v)", k8sGateway, err)
		case !sel.Matches(labels.Set(d.Spec.Template.Labels)):
			fail("PodDisruptionBudget %q selector %s does not select the gateway pods %v", k8sGateway, sel, d.Spec.Template.Labels)
		}
		mu := pdb.Spec.MaxUnavailable
		if mu == nil || mu.Type != intstr.Int || mu.IntVal < 1 {
			fail("PodDisruptionBudget %q: want maxUnavailable a number ≥ 1 (one gateway drains at a time), have %v", k8sGateway, mu)
		} else {
			tolerance = int(mu.IntVal)
		}
	}
	if hpa := m.hpas[k8sGateway]; hpa == nil {
		fail("no HorizontalPodAutoscaler %q", k8sGateway)
	} else {
		ref := hpa.Spec.ScaleTargetRef
		if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != d.Name {
			fail("HorizontalPodAutoscaler %q targets %s %s %q, want apps/v1 Deployment %q", k8sGateway, ref.APIVersion, ref.Kind, ref.Name, d.Name)
		}
		lowest := 1
		if hpa.Spec.MinReplicas != nil {
			lowest = int(*hpa.Spec.MinReplicas)
		}
		if lowest < 2 || lowest <= tolerance {
			fail("HorizontalPodAutoscaler %q minReplicas %d: want ≥ 2 and above the PodDisruptionBudget's maxUnavailable %d, so a disruption leaves a gateway serving", k8sGateway, lowest, tolerance)
		}
		if int(hpa.Spec.MaxReplicas) < lowest {
			fail("HorizontalPodAutoscaler %q maxReplicas %d below minReplicas %d", k8sGateway, hpa.Spec.MaxReplicas, lowest)
		}
		if r := d.Spec.Replicas; r != nil && (int(*r) < lowest || *r > hpa.Spec.MaxReplicas) {
			fail("Deployment %q replicas %d outside the HorizontalPodAutoscaler's %d..%d", d.Name, *r, lowest, hpa.Spec.MaxReplicas)
		}
		var down *autoscalingv2.HPAScalingRules
		if hpa.Spec.Behavior != nil {
			down = hpa.Spec.Behavior.ScaleDown
		}
		if down == nil || len(down.Policies) == 0 || down.StabilizationWindowSeconds == nil || *down.StabilizationWindowSeconds <= 0 {
			fail("HorizontalPodAutoscaler %q: want behavior.scaleDown with a stabilization window and policies (drains are to be spread)", k8sGateway)
		} else {
			for _, p := range down.Policies {
				if p.Type != autoscalingv2.PodsScalingPolicy || p.Value > 1 || p.PeriodSeconds < 60 {
					fail("HorizontalPodAutoscaler %q scaleDown policy %s %d per %ds: want at most 1 pod per 60s", k8sGateway, p.Type, p.Value, p.PeriodSeconds)
				}
			}
		}
	}

	// The Ingress: to the gateway Service, timeouts over the long-poll and
	// the SSE heartbeat (and HAProxy's 65s), no buffering, no affinity.
	if ing := m.ingresses[k8sGateway]; ing == nil {
		fail("no Ingress %q", k8sGateway)
	} else {
		const nginx = "nginx.ingress.kubernetes.io/"
		least := max(65*time.Second, cfg.maxPollWait+10*time.Second, 2*cfg.sseHeartbeat)
		for _, a := range []string{"proxy-read-timeout", "proxy-send-timeout"} {
			v, ok := ing.Annotations[nginx+a]
			secs, err := strconv.Atoi(v)
			if !ok || err != nil || time.Duration(secs)*time.Second < least {
				fail("Ingress %q annotation %s%s = %q: want whole seconds ≥ %s (long-poll %s, SSE heartbeat %s)", k8sGateway, nginx, a, v, least, cfg.maxPollWait, cfg.sseHeartbeat)
			}
		}
		if v := ing.Annotations[nginx+"proxy-buffering"]; v != "off" {
			fail("Ingress %q annotation %sproxy-buffering = %q: want \"off\" (Server-Sent Events)", k8sGateway, nginx, v)
		}
		if v, ok := ing.Annotations[nginx+"affinity"]; ok {
			fail("Ingress %q has affinity %q: clients resume on any gateway", k8sGateway, v)
		}
		backends := 0
		for _, r := range ing.Spec.Rules {
			if r.HTTP == nil {
				continue
			}
			for _, p := range r.HTTP.Paths {
				backends++
				checkIngressBackend(&bad, m, p.Path, p.Backend)
			}
		}
		if backends == 0 {
			fail("Ingress %q has no path to the gateway Service", k8sGateway)
		}
	}

	// kustomization.yaml lists every manifest but itself and the example
	// Secret, and nothing else.
	if m.kustomize == nil {
		fail("no %s", k8sKustomization)
	} else {
		var want []string
		for _, f := range m.files {
			if f != k8sKustomization && f != k8sSecretExample {
				want = append(want, f)
			}
		}
		got := slices.Sorted(slices.Values(m.kustomize.Resources))
		if !slices.Equal(got, want) {
			fail("%s resources %q, want %q (every manifest but itself and %s)", k8sKustomization, got, want, k8sSecretExample)
		}
	}
	return bad
}

// checkSelector adds a problem when a workload's selector does not select
// its own pod template.
func checkSelector(bad *[]string, what string, s *metav1.LabelSelector, pod map[string]string) {
	sel, err := metav1.LabelSelectorAsSelector(s)
	if s == nil || err != nil || sel.Empty() || !sel.Matches(labels.Set(pod)) {
		*bad = append(*bad, fmt.Sprintf("%s selector %v does not select its own pod labels %v (%v)", what, s, pod, err))
	}
}

// checkIngressBackend adds a problem when an Ingress path does not lead to
// a port of the gateway Service.
func checkIngressBackend(bad *[]string, m *k8sManifests, path string, b networkingv1.IngressBackend) {
	svc := m.services[k8sGateway]
	if b.Service == nil || b.Service.Name != k8sGateway || svc == nil {
		*bad = append(*bad, fmt.Sprintf("Ingress %q path %q does not lead to Service %q", k8sGateway, path, k8sGateway))
		return
	}
	bp := b.Service.Port
	if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool {
		return (bp.Name != "" && bp.Name == p.Name) || (bp.Name == "" && bp.Number == p.Port)
	}) {
		*bad = append(*bad, fmt.Sprintf("Ingress %q path %q names port %q/%d, which Service %q does not have", k8sGateway, path, bp.Name, bp.Number, k8sGateway))
	}
}

// sortedKeys returns m's keys in order, so that problems are reported in
// a stable order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestK8sManifestsMatchTheGateway decodes every manifest under deploy/k8s
// strictly and checks it against the gateway's real flags (parseServe on
// the container's args and env): probes, ports, the drain timeline, the
// Service, PDB, HPA, Ingress and kustomization.
func TestK8sManifestsMatchTheGateway(t *testing.T) {
	m, err := loadK8s(k8sDir)
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{"gateway.yaml", "ingress.yaml", k8sKustomization, "redis.yaml", k8sSecretExample}
	if !slices.Equal(m.files, wantFiles) {
		t.Errorf("deploy/k8s holds %q, want %q", m.files, wantFiles)
	}
	for _, w := range []struct {
		kind string
		have []string
		want []string
	}{
		{"Deployment", sortedKeys(m.deployments), []string{k8sGateway}},
		{"StatefulSet", sortedKeys(m.statefulSets), []string{"parley-redis"}},
		{"Service", sortedKeys(m.services), []string{k8sGateway, "parley-redis"}},
		{"Secret", sortedKeys(m.secrets), []string{"parley-secrets"}},
		{"PodDisruptionBudget", sortedKeys(m.pdbs), []string{k8sGateway}},
		{"HorizontalPodAutoscaler", sortedKeys(m.hpas), []string{k8sGateway}},
		{"Ingress", sortedKeys(m.ingresses), []string{k8sGateway}},
	} {
		if !slices.Equal(w.have, w.want) {
			t.Errorf("%s objects %q, want %q", w.kind, w.have, w.want)
		}
	}
	for _, problem := range checkK8s(t, m) {
		t.Error(problem)
	}

	// What the checks saw, so that a pass is not vacuous.
	_, c, err := m.gatewayContainer()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := m.gatewayConfig(t, c)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.addr != ":8080" || cfg.drainTimeout != 20*time.Second || cfg.drainSpread != 3*time.Second || cfg.redisURL != "redis://parley-redis:6379/0" || cfg.jwtSecret == "" || len(cfg.apiKeys) != 1 {
		t.Errorf("gateway config from the manifests: addr %q drain %s spread %s redis %q jwt secret set %t api keys %d; want :8080 20s 3s redis://parley-redis:6379/0 true 1",
			cfg.addr, cfg.drainTimeout, cfg.drainSpread, cfg.redisURL, cfg.jwtSecret != "", len(cfg.apiKeys))
	}
}

// TestK8sChecksCatchBrokenManifests breaks one value at a time in a fresh
// copy of the manifests and expects the matching problem, so each check
// can fail.
func TestK8sChecksCatchBrokenManifests(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(t *testing.T, m *k8sManifests, c *corev1.Container)
		want   string
	}{
		{"grace 10s", func(t *testing.T, m *k8sManifests, c *corev1.Container) {
			grace := int64(10)
			m.deployments[k8sGateway].Spec.Template.Spec.TerminationGracePeriodSeconds = &grace
		}, "terminationGracePeriodSeconds 10s must exceed preStop sleep 5s + drain timeout 20s"},
		{"drain timeout 40s by env", func(t *testing.T, m *k8sManifests, c *corev1.Container) {
			setEnv(c, "PARLEY_DRAIN_TIMEOUT", "40s")
		}, "terminationGracePeriodSeconds 35s must exceed preStop sleep 5s + drain timeout 40s"},
		{"drain timeout by flag wins over env", func(t *testing.T, m *k8sManifests, c *corev1.Container) {
			c.Args = append(c.Args, "--drain-timeout", "2s")
		}, "drain spread 3s must be shorter than drain timeout 2s"},
		{"no preStop", func(t *testing.T, m *k8sManifests, c *corev1.Container) {
			c.Lifecycle = nil
		}, "has no lifecycle.preStop"},
		{"preStop exec", func(t *testing.T, m *k8sManifests, c *corev1.Container) {
			c.Lifecycle.PreStop = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sleep", "5"}}}
		}, "preStop is not the sleep action"},
		{"readiness on another port", func(t *testing.T, m *k8sManifests, c *corev1.Container) {
			c.ReadinessProbe.HTTPGet.Port = intstr.FromInt32(9090)
		}, "readiness probe port 9090 is 9090, but the gateway listens on 8080"},
		{"gateway moved by PARLEY_ADDR", func(t *testing.T, m *k8sManifests, c *corev1.Container) {
			setEnv(c, "PARLEY_ADDR", ":9000")
		}, "readiness probe port http is 8080, but the gateway listens on 9000"},
		{"readiness too slow", func(t *testing.T, m *k8sManifests, c *corev1.Container) {
			c.ReadinessProbe.FailureThreshold = 3
		}, "a draining pod must leave the endpoints within 2s"},
		{"liveness on Redis", func(t *testing.T, m *k8sManifests, c *corev1.Container) {
			c.LivenessProbe.HTTPGet.Path = "/healthz/deep"
		}, `liveness probe GETs "/healthz/deep", want "/healthz"`},
		{"liveness kills the drain", func(t *testing.T, m *k8sManifests, c *corev1.Container) {
			c.LivenessProbe.PeriodSeconds = 2
		}, "gateway liveness fails after 6s of no answer"},
		{"spread above timeout", func(t *testing.T, m *k8sManifests, c *corev1.Container) {
			setEnv(c, "PARLEY_DRAIN_SPREAD", "25s")
		}, "drain spread 25s must be shorter than drain timeout 20s"},
		{"bad flag value", func(t *testing.T, m *k8sManifests, c *corev1.Container) {
			setEnv(c, "PARLEY_DRAIN_SPREAD", "soon")
		}, "parley serve refuses the gateway container's args and env"},
		{"secret key missing", func(t *testing.T, m *k8sManifests, c *corev1.Container) {
			delete(m.secrets["parley-secrets"].StringData, "jwt-secret")
		}, `Secret "parley-secrets" has no key "jwt-secret"`},
		{"session affinity", func(t *testing.T, m *k8sManifests, c *corev1.Container) {
			m.services[k8sGateway].Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		}, "has sessionAffinity ClientIP"},
		{"service to the wrong port", func(t *testing.T, m *k8sManifests, c *corev1.Container) {
			m.services[k8sGateway].Spec.Ports[0].TargetPort = intstr.FromString("metrics")
		}, `Service "parley-gateway" port 80 targets metrics = 0, but the gateway listens on 8080`},
		{"service selects nothing", func(t *testing.T, m *k8sManifests, c *corev1.Container) {
			m.services["parley-redis"].Spec.Selector = map[string]string{"app.kubernetes.io/name": "redis"}
		}, `Service "parley-redis" selector map[app.kubernetes.io/name:redis] matches no workload's pod labels`},
		{"pdb selects other pods", func(t *testing.T, m *k8sManifests, c *corev1.Container) {
			m.pdbs[k8sGateway].Spec.Selector.MatchLabels = map[string]string{"app.kubernetes.io/name": "parley-redis"}
		}, `PodDisruptionBudget "parley-gateway" selector app.kubernetes.io/name=parley-redis does not select the gateway pods`},
		{"hpa targets another deployment", func(t *testing.T, m *k8sManifests, c *corev1.Container) {
			m.hpas[k8sGateway].Spec.ScaleTargetRef.Name = "parley"
		}, `HorizontalPodAutoscaler "parley-gateway" targets apps/v1 Deployment "parley"`},
		{"hpa min 1", func(t *testing.T, m *k8sManifests, c *corev1.Container) {
			one := int32(1)
			m.hpas[k8sGateway].Spec.MinReplicas = &one
		}, "minReplicas 1: want ≥ 2 and above the PodDisruptionBudget's maxUnavailable 1"},
		{"hpa drops pods fast", func(t *testing.T, m *k8sManifests, c *corev1.Container) {
			m.hpas[k8sGateway].Spec.Behavior.ScaleDown.Policies[0].Value = 5
		}, "scaleDown policy Pods 5 per 60s: want at most 1 pod per 60s"},
		{"ingress timeout 60", func(t *testing.T, m *k8sManifests, c *corev1.Container) {
			m.ingresses[k8sGateway].Annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] = "60"
		}, `proxy-read-timeout = "60": want whole seconds ≥ 1m5s`},
		{"ingress buffers", func(t *testing.T, m *k8sManifests, c *corev1.Container) {
			delete(m.ingresses[k8sGateway].Annotations, "nginx.ingress.kubernetes.io/proxy-buffering")
		}, `proxy-buffering = "": want "off"`},
		{"kustomization misses a file", func(t *testing.T, m *k8sManifests, c *corev1.Container) {
			m.kustomize.Resources = m.kustomize.Resources[1:]
		}, "kustomization.yaml resources"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := loadK8s(k8sDir)
			if err != nil {
				t.Fatal(err)
			}
			_, c, err := m.gatewayContainer()
			if err != nil {
				t.Fatal(err)
			}
			tc.mutate(t, m, c)
			problems := checkK8s(t, m)
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Fatalf("want a problem containing %q, got %d:\n%s", tc.want, len(problems), strings.Join(problems, "\n"))
			}
		})
	}
}

// setEnv sets (or adds) a literal env variable of c.
func setEnv(c *corev1.Container, name, value string) {
	for i := range c.Env {
		if c.Env[i].Name == name {
			c.Env[i] = corev1.EnvVar{Name: name, Value: value}
			return
		}
	}
	c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value})
}

// TestK8sDecodeIsStrict shows that a misspelt field, an unknown kind and a
// field of the wrong type are errors, not silently dropped.
func TestK8sDecodeIsStrict(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"misspelt field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers:\n        - name: c\n          lifecycle:\n            preStop:\n              sleeep: {seconds: 5}\n", `unknown field "sleeep"`},
		{"unknown kind", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", `unknown kind "ConfigMap"`},
		{"wrong version", "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: x}\n", `unknown kind "HorizontalPodAutoscaler" of apiVersion "autoscaling/v1"`},
		{"wrong type", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: eighty}]}\n", "v1 Service"},
		{"no name", "apiVersion: v1\nkind: Service\nspec: {}\n", "without metadata.name"},
		{"kustomization field", "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresource: [a.yaml]\n", `unknown field "resource"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "x.yaml"), []byte("# a comment\n---\n"+tc.doc), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := loadK8s(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("loadK8s: %v; want an error containing %q", err, tc.want)
			}
		})
	}
}
