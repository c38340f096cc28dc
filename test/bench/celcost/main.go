// Command celcost breaks down what CEL-mode admission costs the apiserver:
// a real kube-apiserver (envtest), a CEL-mode baseline's compiled
// ValidatingAdmissionPolicy for Ingresses and its namespace's params, for
// params of -small and -large policies, then -creates sequential dry-run
// creates of Ingresses of 1 and of -hosts hosts, each covered by a policy;
// the same creates under a trivial policy with the same params (the floor
// any ValidatingAdmissionPolicy with params pays), and in a namespace no
// policy or binding applies to; and the plugin time of the same trivial
// policy without params. It also reports the time the apiserver's
// ValidatingAdmissionPolicy plugin spent per admitted create, from its own
// metric.
//
//	go run ./test/bench/celcost
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/exposure"
	"github.com/apiwarden/apiwarden/internal/testenv"
)

func main() {
	small := flag.Int("small", 10, "policies in the small params")
	large := flag.Int("large", 1000, "policies in the large params")
	hosts := flag.Int("hosts", 20, "hosts of the larger Ingress")
	creates := flag.Int("creates", 300, "sequential dry-run creates per cell")
	profile := flag.String("apiserver-profile", "", "write a 10-second CPU profile of the apiserver, taken from the start of the CEL creates of -hosts hosts with the large params, to this file")
	real := flag.Bool("real", false, "create the Ingresses for real (and delete them after each cell) instead of dry-run")
	flag.Parse()
	if err := run(*small, *large, *hosts, *creates, *profile, *real); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func ingress(ns, name string, hosts int) *networkingv1.Ingress {
	in := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	for h := range hosts {
		host := fmt.Sprintf("h%d.%s.example.com", h, name)
		in.Spec.Rules = append(in.Spec.Rules, networkingv1.IngressRule{Host: host})
		in.Spec.TLS = append(in.Spec.TLS, networkingv1.IngressTLS{Hosts: []string{host}, SecretName: "tls"})
	}
	return in
}

func run(small, large, hosts, creates int, profile string, real bool) error {
	ctrl.SetLogger(zap.New())
	env, err := testenv.Start()
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	cfg := *env.Config
	cfg.QPS, cfg.Burst = 10000, 10000
	k8s, err := client.New(&cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		return err
	}
	ctx := context.Background()
	measure := func(ns string, h int) (time.Duration, error) {
		var opts []client.CreateOption
		names := 10
		if !real {
			opts = append(opts, client.DryRunAll)
		} else {
			// Each name once: the policies cover ing-0 … ing-<policies-1>.
			names = creates
		}
		start := time.Now()
		for i := 0; i < creates; i++ {
			if err := k8s.Create(ctx, ingress(ns, fmt.Sprintf("ing-%d", i%names), h), opts...); err != nil {
				return 0, err
			}
		}
		d := time.Since(start) / time.Duration(creates)
		if real {
			if err := k8s.DeleteAllOf(ctx, &networkingv1.Ingress{}, client.InNamespace(ns)); err != nil {
				return 0, err
			}
		}
		return d, nil
	}
	fmt.Println("| params | Ingress hosts | per create, CEL | per create, trivial policy | per create, no admission | in the policy plugin, CEL | in the policy plugin, trivial | in the policy plugin, trivial without params |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "plain"}}); err != nil {
		return err
	}
	for _, np := range []int{small, large} {
		ns := fmt.Sprintf("cel-%d", np)
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
		var ps []*apiwardenv1alpha1.APIPolicy
		for i := 0; i < np; i++ {
			ps = append(ps, &apiwardenv1alpha1.APIPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("ing-%d", i), Generation: 1}, Spec: apiwardenv1alpha1.APIPolicySpec{
				TargetRefs:     []apiwardenv1alpha1.PolicyTargetReference{{Group: "networking.k8s.io", Kind: "Ingress", Name: fmt.Sprintf("ing-%d", i)}},
				Authentication: &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: "keys"}}}},
				RateLimit:      &apiwardenv1alpha1.RateLimit{Limits: []apiwardenv1alpha1.RateLimitRule{{By: apiwardenv1alpha1.RateLimitKeyClientIP, Requests: 5, Unit: apiwardenv1alpha1.RateLimitUnitSecond}}},
			}})
		}
		b := &apiwardenv1alpha1.APIBaseline{ObjectMeta: metav1.ObjectMeta{Name: ns}, Spec: apiwardenv1alpha1.APIBaselineSpec{
			Admission: apiwardenv1alpha1.AdmissionModeCEL, NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}}}
		snap := exposure.NewMemorySnapshot([]*apiwardenv1alpha1.APIBaseline{b}, ps, nil)
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: exposure.ParamsName}, Data: exposure.Params(snap, ps, ns)}
		vap, binding, err := exposure.AdmissionPolicy(b, "Ingress", time.Now(), "apiwarden-system")
		if err != nil {
			return err
		}
		// The floor: a policy with the same params whose only validation
		// always holds, over a namespace of its own.
		floorNS := "floor-" + ns
		floorCM := cm.DeepCopy()
		floorCM.Namespace = floorNS
		floor := vap.DeepCopy()
		floor.Name = "floor-" + ns
		floor.Spec.MatchConditions, floor.Spec.Variables = nil, nil
		floor.Spec.Validations = []admissionregistrationv1.Validation{{Expression: "object.metadata.name != 'uncovered'", Message: "floor"}}
		floorBinding := binding.DeepCopy()
		floorBinding.Name, floorBinding.Spec.PolicyName = floor.Name, floor.Name
		floorBinding.Spec.MatchResources.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": floorNS}}
		// And the same trivial policy without params.
		bareNS := "bare-" + ns
		bare := floor.DeepCopy()
		bare.Name, bare.Spec.ParamKind = "bare-"+ns, nil
		bareBinding := floorBinding.DeepCopy()
		bareBinding.Name, bareBinding.Spec.PolicyName, bareBinding.Spec.ParamRef = bare.Name, bare.Name, nil
		bareBinding.Spec.MatchResources.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": bareNS}}
		for _, o := range []client.Object{cm, vap, binding, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: floorNS}}, floorCM, floor, floorBinding,
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: bareNS}}, bare, bareBinding} {
			if err := k8s.Create(ctx, o); err != nil {
				return err
			}
		}
		// Wait until the apiserver enforces both policies: an Ingress
		// named uncovered is denied.
		for _, n := range []string{ns, floorNS, bareNS} {
			for deadline := time.Now().Add(30 * time.Second); ; {
				err := k8s.Create(ctx, ingress(n, "uncovered", 1), client.DryRunAll)
				if err != nil && strings.Contains(err.Error(), "ValidatingAdmissionPolicy") {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("the policy for %s was not enforced within 30s", n)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		var profiled chan error
		for _, h := range []int{1, hosts} {
			if profile != "" && np == large && h == hosts {
				profiled = make(chan error, 1)
				go func() { profiled <- testenv.ProfileAPIServer(ctx, &cfg, 10*time.Second, profile) }()
			}
			// Each cell: the wall time per create, and the time the
			// policy plugin reported per admitted create meanwhile.
			timed := func(n string) (time.Duration, time.Duration, error) {
				before, err := admissionMetric(ctx, &cfg)
				if err != nil {
					return 0, 0, err
				}
				d, err := measure(n, h)
				if err != nil {
					return 0, 0, err
				}
				after, err := admissionMetric(ctx, &cfg)
				if err != nil {
					return 0, 0, err
				}
				return d, time.Duration((after.sum - before.sum) / (after.count - before.count) * float64(time.Second)), nil
			}
			cel, plugin, err := timed(ns)
			if err != nil {
				return err
			}
			trivial, floorPlugin, err := timed(floorNS)
			if err != nil {
				return err
			}
			_, barePlugin, err := timed(bareNS)
			if err != nil {
				return err
			}
			none, err := measure("plain", h)
			if err != nil {
				return err
			}
			fmt.Printf("| %d policies (%d keys) | %d | %s | %s | %s | %s | %s | %s |\n", np, len(cm.Data), h, cel.Round(10*time.Microsecond), trivial.Round(10*time.Microsecond),
				none.Round(10*time.Microsecond), plugin.Round(time.Microsecond), floorPlugin.Round(time.Microsecond), barePlugin.Round(time.Microsecond))
		}
		if profiled != nil {
			if err := <-profiled; err != nil {
				return err
			}
		}
	}
	return nil
}

// sample is a histogram's sum and count.
type sample struct{ sum, count float64 }

// admissionMetric reads, from the apiserver's /metrics, the time its
// ValidatingAdmissionPolicy admission plugin spent on admitted creates.
func admissionMetric(ctx context.Context, cfg *rest.Config) (sample, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return sample{}, err
	}
	data, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return sample{}, fmt.Errorf("reading the apiserver's metrics: %w", err)
	}
	var out sample
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "apiserver_admission_controller_admission_duration_seconds_") ||
			!strings.Contains(line, `name="ValidatingAdmissionPolicy"`) || !strings.Contains(line, `operation="CREATE"`) ||
			!strings.Contains(line, `rejected="false"`) {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			return sample{}, err
		}
		switch {
		case strings.HasPrefix(line, "apiserver_admission_controller_admission_duration_seconds_sum"):
			out.sum += v
		case strings.HasPrefix(line, "apiserver_admission_controller_admission_duration_seconds_count"):
			out.count += v
		}
	}
	return out, nil
}
