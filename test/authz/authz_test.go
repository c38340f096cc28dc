// Package authz_test runs apiwarden's authz service the way a cluster does:
// the APIKeySet controller and the authz service in one manager against a
// real kube-apiserver, keys issued and rotated by the controller, and checks
// sent over real gRPC (Envoy ext_authz) and real HTTP (forward-auth) on
// loopback.
package authz_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/controllers"
	"github.com/apiwarden/apiwarden/internal/authz"
	"github.com/apiwarden/apiwarden/internal/keystore"
	"github.com/apiwarden/apiwarden/internal/testenv"
)

// clock is the time of the controller and the authz service, moved by tests.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time            { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration)   { c.offset.Add(int64(d)) }
func (c *clock) Since(t time.Time) float64 { return c.Now().Sub(t).Seconds() }

var (
	k8s      client.Client
	fake     = &clock{}
	svc      *authz.Service
	grpcConn *grpc.ClientConn
	checker  authv3.AuthorizationClient
	logs     testenv.Buffer
	registry = prometheus.NewRegistry()
	envNS    = "apiwarden-system"
	runs     int
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	ctrl.SetLogger(zap.New(zap.WriteTo(&logs), zap.Level(zapcore.Level(-10))))
	env, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if k8s, err = client.New(env.Config, client.Options{Scheme: testenv.Scheme()}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: envNS}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: testenv.Scheme(), Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r := &controllers.APIKeySetReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorderFor("apiwarden"), Namespace: envNS, Now: fake.Now}
	if err := r.SetupWithManager(mgr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	svc, err = authz.Setup(ctx, mgr, authz.Options{
		Namespace: envNS, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		UsageInterval: 300 * time.Millisecond, FailureThreshold: 5, Now: fake.Now, Registerer: registry,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() { _ = mgr.Start(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for svc.Ready(nil) != nil {
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "the authz service never became ready")
			return 1
		}
		time.Sleep(50 * time.Millisecond)
	}
	grpcConn, err = grpc.NewClient(svc.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer grpcConn.Close()
	checker = authv3.NewAuthorizationClient(grpcConn)
	return m.Run()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "authz") && (strings.Contains(l, "ERROR") || strings.Contains(l, "error")) {
					t.Log(l)
				}
			}
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// setup creates a namespace with an APIKeySet (consumers app: reader, ops:
// admin) and an APIPolicy using it, and returns the namespace.
func setup(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	runs++
	ns := fmt.Sprintf("shop-%d", runs)
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	ks := &apiwardenv1alpha1.APIKeySet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "clients"},
		Spec: apiwardenv1alpha1.APIKeySetSpec{
			KeyPrefix: "shop",
			Consumers: []apiwardenv1alpha1.Consumer{{Name: "app", Roles: []string{"reader"}}, {Name: "ops", Roles: []string{"admin"}}},
			Rotation:  &apiwardenv1alpha1.Rotation{Every: &metav1.Duration{Duration: 30 * 24 * time.Hour}, GracePeriod: &metav1.Duration{Duration: time.Hour}},
		},
	}
	if err := k8s.Create(ctx, ks); err != nil {
		t.Fatal(err)
	}
	pol := &apiwardenv1alpha1.APIPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders"},
		Spec: apiwardenv1alpha1.APIPolicySpec{
			TargetRefs: []apiwardenv1alpha1.PolicyTargetReference{{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: "orders"}},
			Authentication: &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{
				KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: "clients"}},
			}},
			Authorization: &apiwardenv1alpha1.Authorization{Rules: []apiwardenv1alpha1.AuthorizationRule{
				{Name: "admins", Action: apiwardenv1alpha1.AuthorizationActionAllow, Roles: []string{"admin"}},
				{Name: "readers", Action: apiwardenv1alpha1.AuthorizationActionAllow, Roles: []string{"reader"}, Methods: []apiwardenv1alpha1.HTTPMethod{"GET"}, Paths: []apiwardenv1alpha1.PathMatch{{Value: "/orders"}}},
			}},
		},
	}
	if err := k8s.Create(ctx, pol); err != nil {
		t.Fatal(err)
	}
	eventually(t, "keys delivered", func() bool { return key(t, ns, "app") != "" && key(t, ns, "ops") != "" })
	return ns
}

func key(t *testing.T, ns, consumer string) string {
	var s corev1.Secret
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "clients-" + consumer}, &s); err != nil {
		return ""
	}
	k := string(s.Data[keystore.KeyField])
	if k != "" {
		seenMu.Lock()
		seenKeys[k] = true
		seenMu.Unlock()
	}
	return k
}

// seenKeys are every key the tests read, for the no-key-in-logs check.
var (
	seenMu   sync.Mutex
	seenKeys = map[string]bool{}
)

type outcome struct {
	status   int
	consumer string
	body     string
	www      string
	removed  []string
}

func viaHTTP(t *testing.T, ns, method, uri, apiKey string) outcome {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+svc.HTTPAddr().String()+authz.ForwardAuthPrefix+ns+"/orders", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Forwarded-Method", method)
	req.Header.Set("X-Forwarded-Uri", uri)
	req.Header.Set("X-Forwarded-For", "198.51.100.7")
	if apiKey != "" {
		req.Header.Set("X-API-Key", apiKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return outcome{status: resp.StatusCode, consumer: resp.Header.Get(authz.ConsumerHeader), body: string(b), www: resp.Header.Get("WWW-Authenticate")}
}

func viaGRPC(t *testing.T, ns, method, uri, apiKey string) outcome {
	t.Helper()
	h := map[string]string{":authority": "api.example.com", "user-agent": "test"}
	if apiKey != "" {
		h["x-api-key"] = apiKey
	}
	resp, err := checker.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:            &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "198.51.100.8"}}}},
		Request:           &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: uri, Headers: h}},
		ContextExtensions: map[string]string{authz.PolicyContextKey: ns + "/orders"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if ok := resp.GetOkResponse(); ok != nil {
		o := outcome{status: 200, removed: ok.GetHeadersToRemove()}
		for _, hv := range ok.GetHeaders() {
			if hv.GetHeader().GetKey() == "x-apiwarden-consumer" {
				o.consumer = hv.GetHeader().GetValue()
			}
		}
		return o
	}
	d := resp.GetDeniedResponse()
	o := outcome{status: int(d.GetStatus().GetCode()), body: d.GetBody()}
	for _, hv := range d.GetHeaders() {
		if hv.GetHeader().GetKey() == "www-authenticate" {
			o.www = hv.GetHeader().GetValue()
		}
	}
	return o
}

var fronts = map[string]func(*testing.T, string, string, string, string) outcome{"http": viaHTTP, "grpc": viaGRPC}

func TestChecks(t *testing.T) {
	ns := setup(t)
	app, ops := key(t, ns, "app"), key(t, ns, "ops")
	unknown := "shop_" + strings.Repeat("A", 43)
	for name, check := range fronts {
		t.Run(name, func(t *testing.T) {
			cases := []struct {
				name, method, uri, key string
				status                 int
				consumer               string
				bodyHas                string
			}{
				{"valid reader", "GET", "/orders/7", app, 200, "app", ""},
				{"valid admin write", "POST", "/orders", ops, 200, "ops", ""},
				{"reader may not write", "POST", "/orders", app, 403, "", "not allowed"},
				{"reader outside its paths", "GET", "/admin", app, 403, "", "not allowed"},
				{"missing key", "GET", "/orders", "", 401, "", "X-API-Key header"},
				{"malformed key", "GET", "/orders", "hunter2", 401, "", "malformed"},
				{"checksum typo", "GET", "/orders", app[:len(app)-2] + flip(app[len(app)-2:]), 401, "", "malformed"},
				{"unknown key", "GET", "/orders", unknown + "AAAAAA", 401, "", ""},
				{"key in query", "GET", "/orders?api_key=" + app, "", 400, "", "must not be sent in the URL"},
				{"key in query beside header", "GET", "/orders?k=" + app, app, 400, "", "X-API-Key header"},
				{"path not normal", "GET", "/orders/../admin", app, 400, "", "normal form"},
			}
			for _, c := range cases {
				o := check(t, ns, c.method, c.uri, c.key)
				if o.status != c.status || o.consumer != c.consumer || !strings.Contains(o.body, c.bodyHas) {
					t.Errorf("%s: got %d consumer=%q body=%q, want %d consumer=%q body containing %q", c.name, o.status, o.consumer, o.body, c.status, c.consumer, c.bodyHas)
				}
				if c.status == 401 && !strings.Contains(o.www, "X-API-Key") {
					t.Errorf("%s: 401 without a WWW-Authenticate naming the header: %q", c.name, o.www)
				}
				if c.status != 200 && !json.Valid([]byte(o.body)) {
					t.Errorf("%s: body is not JSON: %q", c.name, o.body)
				}
				if strings.Contains(o.body, app) || strings.Contains(o.body, ops) {
					t.Errorf("%s: the body quotes a key", c.name)
				}
				if name == "grpc" && c.status == 200 && (len(o.removed) == 0 || o.removed[0] != "x-api-key") {
					t.Errorf("%s: the key header is not stripped before the upstream: %v", c.name, o.removed)
				}
			}
		})
	}
	// A policy that is not known fails closed.
	if o := viaHTTP(t, ns+"-nope", "GET", "/orders", app); o.status != 403 {
		t.Errorf("unknown policy: got %d", o.status)
	}
	if o := viaGRPC(t, ns+"-nope", "GET", "/orders", app); o.status != 403 {
		t.Errorf("unknown policy over gRPC: got %d", o.status)
	}
}

func flip(s string) string {
	b := []byte(s)
	for i := range b {
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
	}
	return string(b)
}

func annotate(t *testing.T, ns string, kv map[string]string) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var ks apiwardenv1alpha1.APIKeySet
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "clients"}, &ks); err != nil {
			return err
		}
		if ks.Annotations == nil {
			ks.Annotations = map[string]string{}
		}
		for k, v := range kv {
			ks.Annotations[k] = v
		}
		return k8s.Update(context.Background(), &ks)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRotationGraceAndRevocation: after a rotation the old key keeps working
// through its grace period on both front ends, then is refused once the grace
// ends; a revoked consumer is refused at once; the status shows lastUsed.
func TestRotationGraceAndRevocation(t *testing.T) {
	ns := setup(t)
	old := key(t, ns, "app")
	if o := viaGRPC(t, ns, "GET", "/orders", old); o.status != 200 {
		t.Fatalf("fresh key: %d", o.status)
	}
	annotate(t, ns, map[string]string{apiwardenv1alpha1.RotateAnnotation: "app@1"})
	eventually(t, "a new key", func() bool { k := key(t, ns, "app"); return k != "" && k != old })
	next := key(t, ns, "app")
	for name, check := range fronts {
		eventually(t, name+" accepts the new key", func() bool { return check(t, ns, "GET", "/orders", next).status == 200 })
		if o := check(t, ns, "GET", "/orders", old); o.status != 200 || o.consumer != "app" {
			t.Fatalf("%s: the old key in grace was refused: %d", name, o.status)
		}
	}
	// lastUsed reaches status within a few usage intervals.
	eventually(t, "lastUsed in status", func() bool {
		var ks apiwardenv1alpha1.APIKeySet
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "clients"}, &ks); err != nil {
			return false
		}
		for _, c := range ks.Status.Consumers {
			if c.Name != "app" {
				continue
			}
			used := 0
			for _, k := range c.Keys {
				if k.LastUsed != nil {
					used++
				}
			}
			return used == 2
		}
		return false
	})
	// The grace period ends: the authz service refuses the old key by its
	// expiry even before the controller removes its hash.
	fake.Advance(time.Hour + time.Minute)
	for name, check := range fronts {
		if o := check(t, ns, "GET", "/orders", old); o.status != 401 {
			t.Fatalf("%s: the old key after grace: %d", name, o.status)
		}
		if o := check(t, ns, "GET", "/orders", next); o.status != 200 {
			t.Fatalf("%s: the new key after grace: %d", name, o.status)
		}
	}
	// Revocation takes effect as soon as the hash store changes.
	ops := key(t, ns, "ops")
	annotate(t, ns, map[string]string{apiwardenv1alpha1.RevokeAnnotation: "ops@1"})
	eventually(t, "ops refused after revocation", func() bool { return viaHTTP(t, ns, "POST", "/orders", ops).status == 401 })
	if o := viaGRPC(t, ns, "POST", "/orders", ops); o.status != 401 {
		t.Fatalf("revoked key over gRPC: %d", o.status)
	}
}

// TestNoValidRequestRefusedDuringRotations sends requests from 8 clients
// (at most 50,000 each, to loopback only)
// while the consumer's key is rotated five times. Each client uses the key
// in the delivery Secret once it has been there for a second (the
// propagation bound apiwarden documents), else the one before it (in its
// grace period). No request may be refused.
func TestNoValidRequestRefusedDuringRotations(t *testing.T) {
	ns := setup(t)
	type seen struct {
		key string
		at  time.Time
	}
	var mu sync.Mutex
	cur, prev := seen{key: key(t, ns, "app"), at: time.Now().Add(-time.Hour)}, seen{}
	use := func() string {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(cur.at) >= time.Second || prev.key == "" {
			return cur.key
		}
		return prev.key
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var total, refused atomic.Int64
	var firstRefusal atomic.Value
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			check := viaGRPC
			if i%2 == 1 {
				check = viaHTTP
			}
			for n := 0; n < 50000; n++ { // bounded in count as well as in time
				select {
				case <-stop:
					return
				default:
				}
				o := check(t, ns, "GET", "/orders", use())
				total.Add(1)
				if o.status != 200 {
					refused.Add(1)
					firstRefusal.CompareAndSwap(nil, fmt.Sprintf("%d %s", o.status, o.body))
				}
			}
		}()
	}
	for n := 1; n <= 5; n++ {
		before := cur.key
		annotate(t, ns, map[string]string{apiwardenv1alpha1.RotateAnnotation: fmt.Sprintf("app@r%d", n)})
		eventually(t, "rotation delivered", func() bool { k := key(t, ns, "app"); return k != "" && k != before })
		mu.Lock()
		prev, cur = cur, seen{key: key(t, ns, "app"), at: time.Now()}
		mu.Unlock()
		time.Sleep(1500 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d checks during 5 rotations, %d refused", total.Load(), refused.Load())
	if total.Load() < 100 {
		t.Fatalf("only %d checks were made", total.Load())
	}
	if refused.Load() > 0 {
		t.Fatalf("%d valid requests were refused; first: %v", refused.Load(), firstRefusal.Load())
	}
}

// TestNoKeyInLogsOrEvents runs last in this file's order and checks
// everything the manager logged and every Event it recorded across the tests
// above, plus a failing-client report.
func TestNoKeyInLogsOrEvents(t *testing.T) {
	ns := setup(t)
	app := key(t, ns, "app")
	for range 6 {
		viaHTTP(t, ns, "GET", "/orders?api_key="+app, "")
	}
	eventually(t, "the failing client is logged", func() bool {
		return strings.Contains(logs.String(), "Client made many refused requests") && strings.Contains(logs.String(), "198.51.100.7")
	})
	var events corev1.EventList
	if err := k8s.List(context.Background(), &events); err != nil {
		t.Fatal(err)
	}
	var evText strings.Builder
	for _, e := range events.Items {
		evText.WriteString(e.Message + "\n" + e.Reason + "\n")
	}
	families, err := registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var metricsText strings.Builder
	for _, mf := range families {
		if _, err := expfmt.MetricFamilyToText(&metricsText, mf); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(metricsText.String(), `apiwarden_authz_checks_total{protocol="http",result="key_in_query"}`) {
		t.Fatalf("the metrics do not count the refusals:\n%s", metricsText.String())
	}
	seenMu.Lock()
	defer seenMu.Unlock()
	n := len(seenKeys)
	for k := range seenKeys {
		if strings.Contains(logs.String(), k) {
			t.Error("a key appears in the logs")
		}
		if strings.Contains(evText.String(), k) {
			t.Error("a key appears in an Event")
		}
		if strings.Contains(metricsText.String(), k) {
			t.Error("a key appears in the metrics")
		}
	}
	if n == 0 || len(events.Items) == 0 {
		t.Fatalf("nothing to check: %d keys, %d events", n, len(events.Items))
	}
}
