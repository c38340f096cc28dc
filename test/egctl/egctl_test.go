// Package egctl_test runs Envoy Gateway's own translator (egctl x translate,
// built from the pinned github.com/envoyproxy/gateway module by
// hack/egctl.sh) on what apiwarden renders for each golden case of the Envoy
// Gateway renderer, as a peer check: Envoy Gateway must accept every
// rendered policy and turn it into the Envoy filters it stands for.
package egctl_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/render"
	"github.com/apiwarden/apiwarden/internal/render/envoygateway"
	"github.com/apiwarden/apiwarden/internal/render/rendertest"
	"github.com/apiwarden/apiwarden/internal/testenv"
)

// egctl returns the egctl binary: $EGCTL (the Makefile sets it), else the
// per-machine cache that hack/egctl.sh fills.
func egctl(t *testing.T) string {
	t.Helper()
	p, err := testenv.Tool("egctl")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// tlsSecret is a kubernetes.io/tls Secret with a fresh self-signed
// certificate, for the Gateways' HTTPS listeners.
func tlsSecret(t *testing.T, namespace, name string) *corev1.Secret {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "api.example.com"},
		DNSNames: []string{"api.example.com"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{
			corev1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
		}}
}

func service(namespace, name, ip string, port int32, appProtocol string) *corev1.Service {
	s := &corev1.Service{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec:       corev1.ServiceSpec{ClusterIP: ip, Ports: []corev1.ServicePort{{Name: "p", Port: port}}}}
	if appProtocol != "" {
		s.Spec.Ports[0].AppProtocol = &appProtocol
	}
	return s
}

// translateInput builds egctl's input for one case: a GatewayClass of Envoy
// Gateway, namespaces, certificates, backend and authz Services, the case's
// targets, and what apiwarden renders for its policies.
func translateInput(t *testing.T, path string) (input []byte, rendered []client.Object) {
	t.Helper()
	objs, policies := rendertest.ReadCase(t, path)
	lk := render.NewManifestLookup(objs, "default")
	out := []any{&gatewayv1.GatewayClass{TypeMeta: metav1.TypeMeta{APIVersion: "gateway.networking.k8s.io/v1", Kind: "GatewayClass"},
		ObjectMeta: metav1.ObjectMeta{Name: "eg"}, Spec: gatewayv1.GatewayClassSpec{ControllerName: "gateway.envoyproxy.io/gatewayclass-controller"}}}
	namespaces := map[string]bool{rendertest.Authz.Namespace: true}
	ip := 10
	nextIP := func() string { ip++; return fmt.Sprintf("10.96.0.%d", ip) }
	out = append(out, service(rendertest.Authz.Namespace, rendertest.Authz.Name, nextIP(), rendertest.Authz.GRPCPort, "kubernetes.io/h2c"))
	for _, o := range objs {
		co := o.(client.Object)
		namespaces[co.GetNamespace()] = true
		switch x := o.(type) {
		case *apiwardenv1alpha1.APIPolicy:
			continue
		case *gatewayv1.Gateway:
			for _, l := range x.Spec.Listeners {
				if l.TLS != nil {
					for _, ref := range l.TLS.CertificateRefs {
						out = append(out, tlsSecret(t, x.Namespace, string(ref.Name)))
					}
				}
			}
		case *gatewayv1.HTTPRoute:
			for _, r := range x.Spec.Rules {
				for _, b := range r.BackendRefs {
					out = append(out, service(x.Namespace, string(b.Name), nextIP(), int32(*b.Port), ""))
				}
			}
		case *gatewayv1.GRPCRoute:
			for _, r := range x.Spec.Rules {
				for _, b := range r.BackendRefs {
					out = append(out, service(x.Namespace, string(b.Name), nextIP(), int32(*b.Port), "kubernetes.io/h2c"))
				}
			}
		}
		if _, ok := o.(*apiwardenv1alpha1.APIPolicy); !ok {
			out = append(out, o)
		}
	}
	caPEM := tlsSecret(t, "", "").Data[corev1.TLSCertKey]
	for _, p := range policies {
		plans, err := render.Plan(p, lk, envoygateway.Renderer{}, rendertest.Authz)
		if err != nil {
			t.Fatal(err)
		}
		for _, tp := range plans {
			for _, o := range tp.Result.Objects {
				out = append(out, o)
				rendered = append(rendered, o)
				// The CA a ClientTrafficPolicy trusts for client
				// certificates: cert-manager or trust-manager writes it;
				// here, a CA made by the test.
				if ctp, ok := o.(*egv1a1.ClientTrafficPolicy); ok && ctp.Spec.TLS != nil && ctp.Spec.TLS.ClientValidation != nil {
					for _, ref := range ctp.Spec.TLS.ClientValidation.CACertificateRefs {
						meta := metav1.ObjectMeta{Namespace: ctp.Namespace, Name: string(ref.Name)}
						if ref.Kind != nil && *ref.Kind == "ConfigMap" {
							out = append(out, &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, ObjectMeta: meta, Data: map[string]string{"ca.crt": string(caPEM)}})
						} else {
							out = append(out, &corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}, ObjectMeta: meta, Data: map[string][]byte{"ca.crt": caPEM}})
						}
					}
				}
			}
		}
	}
	nsNames := make([]string, 0, len(namespaces))
	for n := range namespaces {
		nsNames = append(nsNames, n)
	}
	sort.Strings(nsNames)
	for _, n := range nsNames {
		out = append(out, &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: n}})
		if n != rendertest.Authz.Namespace {
			out = append(out, render.AuthzReferenceGrant(n, rendertest.Authz))
		}
	}
	var buf bytes.Buffer
	for _, o := range out {
		co := o.(client.Object)
		doc, err := render.MarshalYAML(co)
		if err != nil {
			t.Fatal(err)
		}
		buf.WriteString("---\n")
		buf.Write(doc)
	}
	return buf.Bytes(), rendered
}

// status is the part of a translated policy the test reads.
type status struct {
	Metadata metav1.ObjectMeta `json:"metadata"`
	Status   struct {
		Ancestors []struct {
			Conditions []metav1.Condition `json:"conditions"`
		} `json:"ancestors"`
	} `json:"status"`
}

type translated struct {
	SecurityPolicies       []status `json:"securityPolicies"`
	BackendTrafficPolicies []status `json:"backendTrafficPolicies"`
	ClientTrafficPolicies  []status `json:"clientTrafficPolicies"`
}

func TestEgctlTranslate(t *testing.T) {
	bin := egctl(t)
	cases, err := filepath.Glob("../../internal/render/envoygateway/testdata/*.yaml")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, c := range cases {
		t.Run(strings.TrimSuffix(filepath.Base(c), ".yaml"), func(t *testing.T) {
			input, rendered := translateInput(t, c)
			in := filepath.Join(t.TempDir(), "in.yaml")
			if err := os.WriteFile(in, input, 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "x", "translate", "--from", "gateway-api", "--to", "gateway-api,xds", "-t", "all", "-o", "yaml", "-f", in)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("egctl x translate failed: %v\n%s", err, stderr.String())
			}
			out := stdout.String()
			if os.Getenv("EGCTL_DUMP") != "" {
				_ = os.WriteFile(filepath.Join(os.Getenv("EGCTL_DUMP"), filepath.Base(c)+".out"), stdout.Bytes(), 0o644)
				_ = os.WriteFile(filepath.Join(os.Getenv("EGCTL_DUMP"), filepath.Base(c)+".in"), input, 0o644)
			}
			var tr translated
			if err := yaml.Unmarshal(stdout.Bytes(), &tr); err != nil {
				t.Fatal(err)
			}
			// Every rendered policy appears, with an ancestor, and every
			// condition on it is True: accepted, not conflicted or invalid.
			seen := map[string]bool{}
			overridden := map[string]bool{}
			for _, group := range [][]status{tr.SecurityPolicies, tr.BackendTrafficPolicies, tr.ClientTrafficPolicies} {
				for _, s := range group {
					seen[s.Metadata.Name] = true
					if len(s.Status.Ancestors) == 0 {
						t.Errorf("%s: Envoy Gateway attached it to nothing", s.Metadata.Name)
					}
					for _, a := range s.Status.Ancestors {
						for _, cd := range a.Conditions {
							if cd.Reason == "Overridden" {
								overridden[s.Metadata.Name] = true
							}
							if cd.Status != metav1.ConditionTrue {
								t.Errorf("%s: %s=%s (%s): %s", s.Metadata.Name, cd.Type, cd.Status, cd.Reason, cd.Message)
							}
						}
					}
				}
			}
			want := map[string]bool{}
			for _, o := range rendered {
				if o.GetObjectKind().GroupVersionKind().Group == egv1a1.GroupName {
					if !seen[o.GetName()] {
						t.Errorf("%s %s is missing from egctl's output", o.GetObjectKind().GroupVersionKind().Kind, o.GetName())
					}
				}
				if overridden[o.GetName()] {
					// A more specific policy of Envoy Gateway replaces it on
					// every route, so it yields no filter of its own.
					continue
				}
				switch x := o.(type) {
				case *egv1a1.SecurityPolicy:
					if x.Spec.ExtAuth != nil {
						want["envoy.filters.http.ext_authz"] = true
						want[envoygateway.PolicyContextKey] = true
					}
					if x.Spec.JWT != nil {
						want["envoy.filters.http.jwt_authn"] = true
					}
					if x.Spec.CORS != nil {
						want["envoy.filters.http.cors"] = true
					}
					if x.Spec.Authorization != nil {
						want["envoy.filters.http.rbac"] = true
					}
				case *egv1a1.BackendTrafficPolicy:
					if rl := x.Spec.RateLimit; rl != nil && rl.Local != nil {
						want["envoy.filters.http.local_ratelimit"] = true
					}
					if rl := x.Spec.RateLimit; rl != nil && rl.Global != nil {
						want["envoy.filters.http.ratelimit"] = true
					}
					if x.Spec.RequestBuffer != nil {
						want["envoy.filters.http.buffer"] = true
					}
				case *egv1a1.ClientTrafficPolicy:
					if x.Spec.TLS != nil && x.Spec.TLS.MinVersion != nil {
						want["tlsMinimumProtocolVersion: TLSv1_"+strings.TrimPrefix(string(*x.Spec.TLS.MinVersion), "1.")] = true
					}
					if x.Spec.Headers != nil && x.Spec.Headers.LateResponseHeaders != nil {
						want[string(x.Spec.Headers.LateResponseHeaders.Set[0].Name)] = true
					}
					if x.Spec.TLS != nil && x.Spec.TLS.ClientValidation != nil {
						want["requireClientCertificate: true"] = true
						want["spiffe://apiwarden.io/ns/"+x.Namespace+"/consumer/"] = true
						want["forwardClientCertDetails: SANITIZE_SET"] = true
					}
				case *gatewayv1.HTTPRoute:
					want["httpsRedirect: true|schemeRedirect: https"] = true
				}
			}
			if len(want) == 0 {
				t.Fatal("nothing rendered to check")
			}
			for w := range want {
				found := false
				for _, alt := range strings.Split(w, "|") {
					found = found || strings.Contains(out, alt)
				}
				if !found {
					t.Errorf("egctl's xDS output has no %q", w)
				}
			}
			t.Logf("%d rendered objects, %d xDS features checked", len(rendered), len(want))
		})
	}
}
