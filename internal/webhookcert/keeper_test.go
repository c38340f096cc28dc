package webhookcert_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apiwarden/apiwarden/internal/testenv"
	"github.com/apiwarden/apiwarden/internal/webhookcert"
)

// TestKeeperAgainstAnAPIServer runs keepers against a real kube-apiserver:
// two keepers converge on one Secret and serve the same certificate, a CA
// bundle removed from the webhook configuration is put back, and a Secret
// of the same name that apiwarden did not make is left alone, with the
// keeper not ready and saying why.
func TestKeeperAgainstAnAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	cp := testenv.ForTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	k8s := cp.Client
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "aw"}}); err != nil {
		t.Fatal(err)
	}
	url := "https://127.0.0.1:1/validate"
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "aw-webhooks"}, Webhooks: []admissionregistrationv1.ValidatingWebhook{{
		Name: "probe.apiwarden.io", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url},
		SideEffects: ptr.To(admissionregistrationv1.SideEffectClassNone), AdmissionReviewVersions: []string{"v1"},
		// Matches nothing the test creates.
		Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
			Rule: admissionregistrationv1.Rule{APIGroups: []string{"example.com"}, APIVersions: []string{"v1"}, Resources: []string{"widgets"}}}},
	}}}
	if err := k8s.Create(ctx, vwc); err != nil {
		t.Fatal(err)
	}
	opts := func(secret string) webhookcert.Options {
		return webhookcert.Options{
			Config:    webhookcert.Config{Hosts: []string{"aw-webhook.aw.svc"}, CertValidity: time.Hour, CAValidity: 3 * time.Hour, Propagation: time.Second},
			Namespace: "aw", SecretName: secret, WebhookConfiguration: vwc.Name, Log: logr.Discard(),
		}
	}
	start := func(secret string) *webhookcert.Keeper {
		k, err := webhookcert.New(cp.Config, opts(secret))
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = k.Start(ctx) }()
		return k
	}
	until := func(what string, cond func() bool) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}
	served := func(k *webhookcert.Keeper) []byte {
		c, err := k.GetCertificate(nil)
		if err != nil {
			return nil
		}
		return c.Leaf.Raw
	}

	a, b := start("aw-cert"), start("aw-cert")
	until("both keepers ready with one certificate", func() bool {
		return a.Ready(nil) == nil && b.Ready(nil) == nil && served(a) != nil && bytes.Equal(served(a), served(b))
	})
	secret := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: "aw", Name: "aw-cert"}, secret); err != nil {
		t.Fatal(err)
	}
	state, err := webhookcert.Parse(secret.Data, secret.Annotations)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(state.Leaf.Raw, served(a)) {
		t.Error("the keepers serve a certificate other than the Secret's")
	}

	// Someone (a GitOps sync, say) empties the bundle: it is put back.
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(vwc), vwc); err != nil {
		t.Fatal(err)
	}
	vwc.Webhooks[0].ClientConfig.CABundle = nil
	if err := k8s.Update(ctx, vwc); err != nil {
		t.Fatal(err)
	}
	until("the bundle restored", func() bool {
		got := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		return k8s.Get(ctx, client.ObjectKeyFromObject(vwc), got) == nil && bytes.Equal(got.Webhooks[0].ClientConfig.CABundle, state.BundlePEM())
	})

	// A Secret apiwarden did not make is never overwritten.
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "aw", Name: "someone-else"}, Data: map[string][]byte{"password": []byte("hunter2")}}
	if err := k8s.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	c := start("someone-else")
	until("the keeper to refuse the foreign Secret", func() bool {
		err := c.Ready(nil)
		return err != nil && strings.Contains(err.Error(), "not labelled")
	})
	got := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(foreign), got); err != nil {
		t.Fatal(err)
	}
	if string(got.Data["password"]) != "hunter2" || len(got.Data) != 1 || got.ResourceVersion != foreign.ResourceVersion {
		t.Error("the keeper changed a Secret it did not make")
	}
	if served(c) != nil {
		t.Error("the keeper serves a certificate it could not keep")
	}
}
