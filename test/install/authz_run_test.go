package install

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/authz"
	"github.com/apiwarden/apiwarden/internal/keystore"
	"github.com/apiwarden/apiwarden/internal/testenv"
)

// TestAuthzRunsWithItsOwnRBAC installs the chart with
// authz.separateDeployment=true and runs two manager binaries as the chart's
// two ServiceAccounts, each authorised by nothing but the chart's RBAC: the
// controllers as the manager's account, the authz service as its own. The
// authz service must read the pepper the controllers create, verify a
// delivered key through forward-auth, write the key's use to the APIKeySet's
// status on shutdown, serve metrics to an authorised token, and never be
// refused; its account must not be able to write what only the controllers
// write, nor any Secret. The pepper is the controllers': the authz service
// only reads it.
func TestAuthzRunsWithItsOwnRBAC(t *testing.T) {
	helmPath = tool(t, "helm")
	const release, namespace, apps = "aw-authzrun", "aw-authzrun-system", "authzrun"
	objs, _ := renderChart(t, release, namespace, []string{"authz.separateDeployment=true"})
	kept := withoutWebhooks(objs)
	ensureNamespace(t, namespace)
	applyAll(t, append(chartCRDs(t), kept...), nil)
	fullname := release + "-apiwarden"

	ports := make([]int, 5)
	for i := range ports {
		var err error
		if ports[i], err = testenv.FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	controllers := startManagerAs(t, namespace, fullname,
		"--roles=controllers", "--namespace="+namespace, "--leader-election-namespace="+namespace, "--policy-reports=false",
		"--metrics-bind-address=0", fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", ports[0]))
	metricsAddr, httpAddr := fmt.Sprintf("127.0.0.1:%d", ports[1]), fmt.Sprintf("127.0.0.1:%d", ports[3])
	az := startManagerAs(t, namespace, fullname+"-authz",
		"--roles=authz", "--namespace="+namespace, "--metrics-bind-address="+metricsAddr,
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", ports[2]),
		"--authz-http-bind-address="+httpAddr, fmt.Sprintf("--authz-grpc-bind-address=127.0.0.1:%d", ports[4]))
	az.waitReady(fmt.Sprintf("127.0.0.1:%d", ports[2]))

	ctx := context.Background()
	ensureNamespace(t, apps)
	set := &apiwardenv1alpha1.APIKeySet{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "keys"}, Spec: apiwardenv1alpha1.APIKeySetSpec{
		Consumers: []apiwardenv1alpha1.Consumer{{Name: "app"}}}}
	policy := &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "api"}, Spec: apiwardenv1alpha1.APIPolicySpec{
		TargetRefs: []apiwardenv1alpha1.PolicyTargetReference{{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: "api"}},
		Authentication: &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{
			KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: "keys"}}, Header: "X-API-Key"}},
	}}
	for _, o := range []client.Object{set, policy} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), o) })
	}
	var key, keyID string
	controllers.until("the key Secret", 60*time.Second, func(ctx context.Context) bool {
		s := &corev1.Secret{}
		if k8s.Get(ctx, client.ObjectKey{Namespace: apps, Name: "keys-app"}, s) != nil {
			return false
		}
		key, keyID = string(s.Data[keystore.KeyField]), string(s.Data[keystore.KeyIDField])
		return key != ""
	})
	check := func(ctx context.Context, withKey string) int {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+authz.ForwardAuthPrefix+apps+"/api", nil)
		if err != nil {
			return 0
		}
		req.Header.Set("X-Forwarded-Method", "GET")
		req.Header.Set("X-Forwarded-Uri", "/orders")
		if withKey != "" {
			req.Header.Set("X-API-Key", withKey)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	az.until("forward-auth to admit the delivered key", 60*time.Second, func(ctx context.Context) bool { return check(ctx, key) == http.StatusOK })
	if code := check(ctx, ""); code != http.StatusUnauthorized {
		t.Errorf("a request without a key: %d, want 401", code)
	}

	token := testenv.ServiceAccountToken(t, k8s, "authzrun-monitoring", "prometheus", fullname+"-metrics-reader")
	az.until("an authorised metrics scrape of the authz service", 30*time.Second, func(context.Context) bool {
		code, body, err := testenv.Scrape(metricsAddr, token)
		return err == nil && code == http.StatusOK && len(body) > 0
	})

	// What the authz account may not do: read a Secret outside its own
	// namespace (the hash stores live there), write any Secret (in its
	// own namespace that would let it mint a token for the manager's
	// account), or anything the controllers write.
	azUser := "system:serviceaccount:" + namespace + ":" + fullname + "-authz"
	for _, attr := range []struct{ ns, group, resource, verb string }{
		{namespace, "", "secrets", "create"},
		{namespace, "", "serviceaccounts/token", "create"},
		{apps, "", "secrets", "get"},
		{apps, "", "secrets", "list"},
		{"", "", "secrets", "list"},
		{apps, "", "secrets", "create"},
		{apps, "", "secrets", "update"},
		{apps, "apiwarden.io", "apikeysets", "update"},
		{apps, "apiwarden.io", "apipolicies/status", "update"},
		{apps, "gateway.envoyproxy.io", "securitypolicies", "patch"},
		{"", "admissionregistration.k8s.io", "validatingadmissionpolicies", "create"},
		{"", "apiextensions.k8s.io", "customresourcedefinitions", "create"},
	} {
		if allowed(t, azUser, attr.ns, attr.group, attr.resource, attr.verb) {
			t.Errorf("the authz account may %s %s.%s in %q", attr.verb, attr.resource, attr.group, attr.ns)
		}
	}

	if !allowed(t, azUser, namespace, "", "secrets", "list") {
		t.Error("the authz account may not read the hash stores in its own namespace")
	}

	// Its last usage report, on SIGTERM, goes to the APIKeySet's status.
	if err := az.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-az.exited:
		az.exited <- err
		if err != nil {
			t.Fatalf("the authz service exited with %v after SIGTERM", err)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("the authz service did not exit within 45s of SIGTERM")
	}
	got := &apiwardenv1alpha1.APIKeySet{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(set), got); err != nil {
		t.Fatal(err)
	}
	used := false
	for _, c := range got.Status.Consumers {
		for _, k := range c.Keys {
			used = used || (k.ID == keyID && k.LastUsed != nil)
		}
	}
	if !used {
		t.Errorf("the key's use is not in the APIKeySet's status: %+v", got.Status.Consumers)
	}
	az.checkNotRefused(t)
	controllers.checkNotRefused(t)
}

// allowed asks the apiserver whether user may verb resource.group in
// namespace (cluster-wide when empty).
func allowed(t *testing.T, user, namespace, group, resource, verb string) bool {
	t.Helper()
	res, sub, _ := strings.Cut(resource, "/")
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   user,
		Groups: []string{"system:serviceaccounts", "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: namespace, Group: group, Resource: res, Subresource: sub, Verb: verb},
	}}
	if err := k8s.Create(context.Background(), sar); err != nil {
		t.Fatal(err)
	}
	return sar.Status.Allowed
}
