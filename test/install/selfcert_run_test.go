package install

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apiwarden/apiwarden/internal/testenv"
	"github.com/apiwarden/apiwarden/internal/webhookcert"
)

// TestSelfManagedCertificateWithChartRBAC installs the chart with
// webhook.certificate.mode=self-managed and runs the real manager binary,
// with the webhook role and the certificate flags the chart's Deployment
// passes, as the chart's ServiceAccount under nothing but the chart's RBAC:
// it must create the certificate Secret, inject a CA bundle that verifies
// the serving certificate for the webhook Service's name into every
// webhook of the chart's configuration, become ready, and never be refused.
func TestSelfManagedCertificateWithChartRBAC(t *testing.T) {
	helmPath = tool(t, "helm")
	const release, namespace = "aw-selfrun", "aw-selfrun-system"
	objs, in := renderChart(t, release, namespace, []string{"webhook.certificate.mode=self-managed"})
	ensureNamespace(t, namespace)
	applyAll(t, append(chartCRDs(t), objs...), nil)
	fullname := release + "-apiwarden"

	args := []string{"--roles=webhook", "--namespace=" + namespace}
	for _, a := range managerArgs(t, in, fullname+"-manager") {
		for _, keep := range []string{"--webhook-cert-mode=", "--webhook-secret=", "--webhook-configuration=", "--webhook-service=", "--webhook-cert-validity=", "--webhook-ca-validity="} {
			if strings.HasPrefix(a, keep) {
				args = append(args, a)
			}
		}
	}
	if len(args) != 8 {
		t.Fatalf("the chart's Deployment does not pass every self-managed certificate flag: %v", args)
	}
	ports := make([]int, 3)
	for i := range ports {
		var err error
		if ports[i], err = testenv.FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	probeAddr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	args = append(args, fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[0]), "--health-probe-bind-address="+probeAddr, fmt.Sprintf("--webhook-port=%d", ports[2]))
	m := startManagerAs(t, namespace, fullname, args...)

	m.waitReady(probeAddr)
	ctx := context.Background()
	secret := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: namespace, Name: fullname + "-webhook-cert"}, secret); err != nil {
		t.Fatal(err)
	}
	if secret.Labels[webhookcert.LabelManagedBy] != "apiwarden" {
		t.Errorf("the certificate Secret's labels %v do not say apiwarden manages it", secret.Labels)
	}
	state, err := webhookcert.Parse(secret.Data, secret.Annotations)
	if err != nil {
		t.Fatalf("the certificate Secret: %v", err)
	}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: fullname}, vwc); err != nil {
		t.Fatal(err)
	}
	for _, w := range vwc.Webhooks {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(w.ClientConfig.CABundle) {
			t.Errorf("webhook %s has no CA bundle", w.Name)
			continue
		}
		if _, err := state.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: fullname + "-webhook." + namespace + ".svc"}); err != nil {
			t.Errorf("webhook %s: its CA bundle does not verify the serving certificate for the Service's name: %v", w.Name, err)
		}
	}
	m.checkNotRefused(t)
}
