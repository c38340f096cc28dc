package install

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// install is a rendered installation decoded into the kinds the wiring
// checks read.
type install struct {
	deployments  []*appsv1.Deployment
	services     []*corev1.Service
	accounts     []*corev1.ServiceAccount
	webhooks     []*admissionregistrationv1.ValidatingWebhookConfiguration
	pdbs         []*policyv1.PodDisruptionBudget
	netpols      []*networkingv1.NetworkPolicy
	roles        []*rbacv1.Role
	clusterRoles []*rbacv1.ClusterRole
	bindings     []*rbacv1.RoleBinding
	crBindings   []*rbacv1.ClusterRoleBinding
	certificates []*unstructured.Unstructured
	issuers      []*unstructured.Unstructured
}

func decodeInstall(t *testing.T, objs []*unstructured.Unstructured) *install {
	t.Helper()
	return &install{
		deployments:  typed[appsv1.Deployment](t, objs, "Deployment"),
		services:     typed[corev1.Service](t, objs, "Service"),
		accounts:     typed[corev1.ServiceAccount](t, objs, "ServiceAccount"),
		webhooks:     webhookConfigs(t, objs),
		pdbs:         typed[policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget"),
		netpols:      typed[networkingv1.NetworkPolicy](t, objs, "NetworkPolicy"),
		roles:        typed[rbacv1.Role](t, objs, "Role"),
		clusterRoles: typed[rbacv1.ClusterRole](t, objs, "ClusterRole"),
		bindings:     typed[rbacv1.RoleBinding](t, objs, "RoleBinding"),
		crBindings:   typed[rbacv1.ClusterRoleBinding](t, objs, "ClusterRoleBinding"),
		certificates: ofKind(objs, "Certificate"),
		issuers:      ofKind(objs, "Issuer"),
	}
}

// selects returns the Deployments whose pods a selector (a Service's,
// a PDB's, a NetworkPolicy's) matches in namespace ns.
func (in *install) selects(ns string, sel labels.Selector) []*appsv1.Deployment {
	var out []*appsv1.Deployment
	for _, d := range in.deployments {
		if d.Namespace == ns && !sel.Empty() && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			out = append(out, d)
		}
	}
	return out
}

// containerPort resolves a Service's targetPort in a Deployment's pod.
func containerPort(d *appsv1.Deployment, name string, number int32) (int32, bool) {
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			if (name != "" && p.Name == name) || (name == "" && p.ContainerPort == number) {
				return p.ContainerPort, true
			}
		}
	}
	return 0, false
}

// checkWiring returns every reference between the objects of an
// installation that does not resolve: the mistakes a rename or a prefix
// makes and that the apiserver accepts without complaint.
// checkInstall runs every check of rendered manifests (what names them in
// failures): wiring, HA (two replicas at least), RBAC and Pod Security.
func checkInstall(t *testing.T, in *install, what string) {
	t.Helper()
	if errs := checkWiring(in); len(errs) > 0 {
		t.Errorf("%s: the objects are not wired together:%s", what, errorsText(errs))
	}
	for _, d := range in.deployments {
		if errs := checkHA(d, 2); len(errs) > 0 {
			t.Errorf("%s: not highly available:%s", what, errorsText(errs))
		}
	}
	if errs := checkRoles(in); len(errs) > 0 {
		t.Errorf("%s: the RBAC grants too much:%s", what, errorsText(errs))
	}
	checkPodSecurity(t, in)
}

func checkWiring(in *install) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(in.deployments) == 0 {
		fail("no Deployment rendered")
	}
	findService := func(ns, name string) *corev1.Service {
		for _, s := range in.services {
			if s.Namespace == ns && s.Name == name {
				return s
			}
		}
		return nil
	}
	// Every Service selects pods that serve each of its target ports.
	for _, s := range in.services {
		ds := in.selects(s.Namespace, labels.SelectorFromSet(s.Spec.Selector))
		if len(ds) == 0 {
			fail("Service %s/%s selects no rendered Deployment's pods (selector %v)", s.Namespace, s.Name, s.Spec.Selector)
		}
		for _, d := range ds {
			for _, p := range s.Spec.Ports {
				if _, ok := containerPort(d, p.TargetPort.StrVal, p.TargetPort.IntVal); !ok {
					fail("Service %s/%s port %s targets %s, which Deployment %s does not expose", s.Namespace, s.Name, p.Name, p.TargetPort.String(), d.Name)
				}
			}
		}
	}
	// Every webhook names a rendered Service and one of its ports; its CA
	// comes from a rendered Certificate that covers the Service's DNS name.
	for _, w := range in.webhooks {
		for _, h := range w.Webhooks {
			ref := h.ClientConfig.Service
			if ref == nil {
				fail("webhook %s has no service reference", h.Name)
				continue
			}
			s := findService(ref.Namespace, ref.Name)
			if s == nil {
				fail("webhook %s names Service %s/%s, which is not rendered", h.Name, ref.Namespace, ref.Name)
				continue
			}
			port := int32(443)
			if ref.Port != nil {
				port = *ref.Port
			}
			if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == port }) {
				fail("webhook %s calls port %d of Service %s, which has no such port", h.Name, port, s.Name)
			}
			if h.FailurePolicy == nil || h.TimeoutSeconds == nil || h.SideEffects == nil {
				fail("webhook %s leaves failurePolicy, timeoutSeconds or sideEffects to defaults", h.Name)
			}
		}
		if from, ok := w.Annotations["cert-manager.io/inject-ca-from"]; ok {
			ns, name, _ := strings.Cut(from, "/")
			var cert *unstructured.Unstructured
			for _, c := range in.certificates {
				if c.GetNamespace() == ns && c.GetName() == name {
					cert = c
				}
			}
			if cert == nil {
				fail("%s injects its CA from Certificate %s, which is not rendered", w.Name, from)
				continue
			}
			dns, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
			for _, h := range w.Webhooks {
				if ref := h.ClientConfig.Service; ref != nil && !slices.Contains(dns, ref.Name+"."+ref.Namespace+".svc") {
					fail("Certificate %s does not cover %s.%s.svc (dnsNames %v)", from, ref.Name, ref.Namespace, dns)
				}
			}
		}
	}
	// Every Certificate is issued by a rendered Issuer, and its Secret is
	// mounted by a Deployment that serves the webhook.
	for _, c := range in.certificates {
		issuer, _, _ := unstructured.NestedString(c.Object, "spec", "issuerRef", "name")
		kind, _, _ := unstructured.NestedString(c.Object, "spec", "issuerRef", "kind")
		if kind == "Issuer" && !slices.ContainsFunc(in.issuers, func(i *unstructured.Unstructured) bool {
			return i.GetNamespace() == c.GetNamespace() && i.GetName() == issuer
		}) {
			fail("Certificate %s names Issuer %s, which is not rendered", c.GetName(), issuer)
		}
		secret, _, _ := unstructured.NestedString(c.Object, "spec", "secretName")
		mounted := false
		for _, d := range in.deployments {
			for _, v := range d.Spec.Template.Spec.Volumes {
				if v.Secret != nil && v.Secret.SecretName == secret && d.Namespace == c.GetNamespace() {
					mounted = true
				}
			}
		}
		if !mounted {
			fail("no Deployment mounts Certificate %s's Secret %s", c.GetName(), secret)
		}
	}
	// PodDisruptionBudgets and NetworkPolicies select the manager's pods.
	for _, p := range in.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil || len(in.selects(p.Namespace, sel)) == 0 {
			fail("PodDisruptionBudget %s selects no rendered Deployment's pods", p.Name)
		}
	}
	for _, np := range in.netpols {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		ds := in.selects(np.Namespace, sel)
		if err != nil || len(ds) == 0 {
			fail("NetworkPolicy %s selects no rendered Deployment's pods", np.Name)
		}
		// Every port a pod serves, but the kubelet's probe port, is open.
		for _, d := range ds {
			for _, c := range d.Spec.Template.Spec.Containers {
				for _, p := range c.Ports {
					if p.Name == "probes" {
						continue
					}
					if !netpolAllows(np, p.ContainerPort) {
						fail("NetworkPolicy %s does not admit port %d (%s) of Deployment %s", np.Name, p.ContainerPort, p.Name, d.Name)
					}
				}
			}
		}
	}
	// Every Deployment has a PodDisruptionBudget and a NetworkPolicy.
	for _, d := range in.deployments {
		podLabels := labels.Set(d.Spec.Template.Labels)
		if !slices.ContainsFunc(in.pdbs, func(p *policyv1.PodDisruptionBudget) bool {
			sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
			return err == nil && p.Namespace == d.Namespace && sel.Matches(podLabels)
		}) {
			fail("Deployment %s has no PodDisruptionBudget", d.Name)
		}
		if !slices.ContainsFunc(in.netpols, func(np *networkingv1.NetworkPolicy) bool {
			sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			return err == nil && np.Namespace == d.Namespace && sel.Matches(podLabels)
		}) {
			fail("Deployment %s has no NetworkPolicy", d.Name)
		}
	}
	// The pods run as a rendered ServiceAccount, bound to every rendered role.
	for _, d := range in.deployments {
		sa := d.Spec.Template.Spec.ServiceAccountName
		if !slices.ContainsFunc(in.accounts, func(a *corev1.ServiceAccount) bool { return a.Namespace == d.Namespace && a.Name == sa }) {
			fail("Deployment %s runs as ServiceAccount %q, which is not rendered", d.Name, sa)
		}
	}
	subjectsOK := func(kind, name string, subjects []rbacv1.Subject) {
		for _, s := range subjects {
			if s.Kind != rbacv1.ServiceAccountKind || !slices.ContainsFunc(in.accounts, func(a *corev1.ServiceAccount) bool {
				return a.Namespace == s.Namespace && a.Name == s.Name
			}) {
				fail("%s %s binds %s %s/%s, which is not a rendered ServiceAccount", kind, name, s.Kind, s.Namespace, s.Name)
			}
		}
	}
	for _, b := range in.crBindings {
		if !slices.ContainsFunc(in.clusterRoles, func(r *rbacv1.ClusterRole) bool { return r.Name == b.RoleRef.Name }) {
			fail("ClusterRoleBinding %s refers to ClusterRole %s, which is not rendered", b.Name, b.RoleRef.Name)
		}
		subjectsOK("ClusterRoleBinding", b.Name, b.Subjects)
	}
	for _, b := range in.bindings {
		if !slices.ContainsFunc(in.roles, func(r *rbacv1.Role) bool { return r.Namespace == b.Namespace && r.Name == b.RoleRef.Name }) {
			fail("RoleBinding %s refers to Role %s, which is not rendered", b.Name, b.RoleRef.Name)
		}
		subjectsOK("RoleBinding", b.Name, b.Subjects)
	}
	for _, r := range in.clusterRoles {
		if isMetricsReader(r) || forUsers(r) {
			continue // bound by the cluster's operators, or aggregated into view/edit/admin
		}
		if !slices.ContainsFunc(in.crBindings, func(b *rbacv1.ClusterRoleBinding) bool { return b.RoleRef.Name == r.Name }) {
			fail("ClusterRole %s is bound to nothing", r.Name)
		}
	}
	return errs
}

func netpolAllows(np *networkingv1.NetworkPolicy, port int32) bool {
	for _, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 {
			return true
		}
		for _, p := range rule.Ports {
			if p.Port == nil || p.Port.IntVal == port {
				return true
			}
		}
	}
	return false
}

// flagValue returns the value of --name=value in a container's args.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// checkHA returns what keeps a manager Deployment from surviving the loss of
// a node or a rolling update: fewer than minReplicas replicas, no
// anti-affinity on hostname or topology spread, a grace period no longer
// than the manager's graceful shutdown, probes not on /readyz and /healthz
// at port 8081.
func checkHA(d *appsv1.Deployment, minReplicas int32) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("Deployment %s: "+format, append([]any{d.Name}, args...)...))
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < minReplicas {
		fail("replicas %v, want at least %d", d.Spec.Replicas, minReplicas)
	}
	pod := d.Spec.Template.Spec
	if a := pod.Affinity; a == nil || a.PodAntiAffinity == nil || !slices.ContainsFunc(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution,
		func(w corev1.WeightedPodAffinityTerm) bool {
			sel, err := metav1.LabelSelectorAsSelector(w.PodAffinityTerm.LabelSelector)
			return w.PodAffinityTerm.TopologyKey == corev1.LabelHostname && err == nil && sel.Matches(labels.Set(d.Spec.Template.Labels))
		}) {
		fail("no preferred pod anti-affinity on %s that selects its own pods", corev1.LabelHostname)
	}
	if len(pod.TopologySpreadConstraints) == 0 {
		fail("no topologySpreadConstraints")
	}
	for _, c := range pod.Containers {
		shutdown := 30 * time.Second // the manager's default
		if v, ok := flagValue(c.Args, "graceful-shutdown-timeout"); ok {
			var err error
			if shutdown, err = time.ParseDuration(v); err != nil {
				fail("--graceful-shutdown-timeout=%s: %v", v, err)
			}
		}
		delay := 5 * time.Second // the manager's default --shutdown-delay
		if v, ok := flagValue(c.Args, "shutdown-delay"); ok {
			var err error
			if delay, err = time.ParseDuration(v); err != nil {
				fail("--shutdown-delay=%s: %v", v, err)
			}
		}
		if pod.TerminationGracePeriodSeconds == nil || time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second <= delay+shutdown {
			fail("terminationGracePeriodSeconds %v is not longer than the manager's shutdown delay and graceful shutdown (%s + %s)", pod.TerminationGracePeriodSeconds, delay, shutdown)
		}
		probe := func(what string, p *corev1.Probe, path string) {
			if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path {
				fail("container %s: %s probe is not an HTTP GET of %s", c.Name, what, path)
				return
			}
			port := p.HTTPGet.Port.IntVal
			if p.HTTPGet.Port.StrVal != "" {
				port, _ = containerPort(&appsv1.Deployment{Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{c}}}}}, p.HTTPGet.Port.StrVal, 0)
			}
			if port != 8081 {
				fail("container %s: %s probe is on port %s, not the manager's probe port 8081", c.Name, what, p.HTTPGet.Port.String())
			}
		}
		probe("readiness", c.ReadinessProbe, "/readyz")
		probe("liveness", c.LivenessProbe, "/healthz")
	}
	return errs
}

// deepCopyObjects copies objs, so a test can break one copy on purpose.
func deepCopyObjects(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	out := make([]*unstructured.Unstructured, len(objs))
	for i, o := range objs {
		out[i] = o.DeepCopy()
	}
	return out
}

// setField sets a field of the first object of kind in objs, for the
// negative controls.
func setField(t *testing.T, objs []*unstructured.Unstructured, kind string, value any, path ...string) {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind {
			if err := unstructured.SetNestedField(o.Object, runtime.DeepCopyJSONValue(value), path...); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no %s to change", kind)
}

func errorsText(errs []error) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString("\n  ")
		b.WriteString(e.Error())
	}
	return b.String()
}
