package install

import (
	"context"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// restrictedViolations evaluates a pod template against the restricted Pod
// Security Standard, at its latest version, with the checks of
// k8s.io/pod-security-admission: the code the apiserver's PodSecurity
// admission runs. Each returned string names a failed check and why.
func restrictedViolations(t *testing.T, tmpl *corev1.PodTemplateSpec) []string {
	t.Helper()
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	results := evaluator.EvaluatePod(api.LevelVersion{Level: api.LevelRestricted, Version: api.LatestVersion()}, &tmpl.ObjectMeta, &tmpl.Spec)
	if len(results) == 0 {
		t.Fatal("the pod-security-admission evaluator ran no check")
	}
	var out []string
	for _, r := range results {
		if !r.Allowed {
			out = append(out, fmt.Sprintf("%s: %s", r.ForbiddenReason, r.ForbiddenDetail))
		}
	}
	return out
}

// admitPod asks the envtest apiserver to create (dry-run) a pod from a
// Deployment's template in a namespace that enforces the restricted
// standard; the apiserver's PodSecurity admission refuses it when it does
// not comply. It returns that refusal, or nil.
func admitPod(t *testing.T, d *appsv1.Deployment) error {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: restrictedNamespace, GenerateName: d.Name + "-", Labels: d.Spec.Template.Labels},
		Spec:       *d.Spec.Template.Spec.DeepCopy(),
	}
	err := k8s.Create(context.Background(), pod, client.DryRunAll)
	if err != nil && !apierrors.IsForbidden(err) {
		t.Fatalf("dry-run create of %s's pod: %v", d.Name, err)
	}
	return err
}

// checkPodSecurity holds every Deployment of an installation to the
// restricted standard, twice: with the library and through the apiserver.
// It also checks the fields the standard leaves open that apiwarden
// promises: a read-only root filesystem and UID 65532.
func checkPodSecurity(t *testing.T, in *install) {
	t.Helper()
	if len(in.deployments) == 0 {
		t.Fatal("no Deployment rendered")
	}
	for _, d := range in.deployments {
		if v := restrictedViolations(t, &d.Spec.Template); len(v) > 0 {
			t.Errorf("Deployment %s breaks the restricted Pod Security Standard: %v", d.Name, v)
		}
		if err := admitPod(t, d); err != nil {
			t.Errorf("the apiserver's PodSecurity admission refuses Deployment %s's pod: %v", d.Name, err)
		}
		pod := d.Spec.Template.Spec
		if pod.SecurityContext == nil || pod.SecurityContext.RunAsUser == nil || *pod.SecurityContext.RunAsUser != 65532 {
			t.Errorf("Deployment %s does not run as UID 65532 (the image's nonroot user)", d.Name)
		}
		if pod.AutomountServiceAccountToken != nil && !*pod.AutomountServiceAccountToken {
			t.Errorf("Deployment %s turns off its ServiceAccount token, which the manager needs", d.Name)
		}
		for _, c := range append(pod.InitContainers, pod.Containers...) {
			sc := c.SecurityContext
			if sc == nil || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) {
				t.Errorf("Deployment %s container %s: root filesystem is not read-only", d.Name, c.Name)
			}
		}
	}
}

// TestPodSecurityCheckRejects is the negative control: pods that break the
// restricted standard in each way it names are refused by both checks.
func TestPodSecurityCheckRejects(t *testing.T) {
	good := func() *appsv1.Deployment {
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "control"}, Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "control"}},
			Spec: corev1.PodSpec{
				SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
				Containers: []corev1.Container{{Name: "c", Image: "example.com/c:1", SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				}}},
			},
		}}}
	}
	if v := restrictedViolations(t, &good().Spec.Template); len(v) > 0 {
		t.Fatalf("the control pod is refused by the library: %v", v)
	}
	if err := admitPod(t, good()); err != nil {
		t.Fatalf("the control pod is refused by the apiserver: %v", err)
	}
	breaks := map[string]func(*corev1.PodSpec){
		"runs as root":            func(p *corev1.PodSpec) { p.SecurityContext.RunAsNonRoot = nil },
		"may escalate privileges": func(p *corev1.PodSpec) { p.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil },
		"keeps capabilities":      func(p *corev1.PodSpec) { p.Containers[0].SecurityContext.Capabilities.Drop = nil },
		"adds NET_ADMIN": func(p *corev1.PodSpec) {
			p.Containers[0].SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
		},
		"no seccomp profile": func(p *corev1.PodSpec) { p.SecurityContext.SeccompProfile = nil },
		"unconfined seccomp": func(p *corev1.PodSpec) { p.SecurityContext.SeccompProfile.Type = corev1.SeccompProfileTypeUnconfined },
		"host network":       func(p *corev1.PodSpec) { p.HostNetwork = true },
		"host PID":           func(p *corev1.PodSpec) { p.HostPID = true },
		"host IPC":           func(p *corev1.PodSpec) { p.HostIPC = true },
		"privileged": func(p *corev1.PodSpec) {
			// The apiserver refuses privileged without escalation as invalid.
			p.Containers[0].SecurityContext.Privileged = ptr.To(true)
			p.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil
		},
		"host port": func(p *corev1.PodSpec) {
			p.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 80}}
		},
		"hostPath volume": func(p *corev1.PodSpec) {
			p.Volumes = []corev1.Volume{{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
		},
		"runs as UID 0 explicitly": func(p *corev1.PodSpec) { p.SecurityContext.RunAsUser = ptr.To[int64](0) },
	}
	for name, breakIt := range breaks {
		t.Run(name, func(t *testing.T) {
			d := good()
			breakIt(&d.Spec.Template.Spec)
			if v := restrictedViolations(t, &d.Spec.Template); len(v) == 0 {
				t.Error("the library accepts it")
			}
			if err := admitPod(t, d); err == nil {
				t.Error("the apiserver's PodSecurity admission accepts it")
			}
		})
	}
}
