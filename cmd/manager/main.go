// Command manager runs apiwarden in a cluster: the controllers (leader-elected),
// the admission webhook and the authz service, each a role that can be turned
// on or off with --roles so that one binary serves every deployment shape.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	_ "k8s.io/client-go/plugin/pkg/client/auth" // Cloud auth plugins for out-of-cluster kubeconfigs.
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/apiwarden/apiwarden/controllers"
	"github.com/apiwarden/apiwarden/internal/authz"
	"github.com/apiwarden/apiwarden/internal/render"
	"github.com/apiwarden/apiwarden/internal/render/gateways"
	"github.com/apiwarden/apiwarden/internal/scheme"
	"github.com/apiwarden/apiwarden/internal/version"
	"github.com/apiwarden/apiwarden/internal/webhookcert"
	"github.com/apiwarden/apiwarden/webhooks"
)

// Role names, as accepted by --roles.
const (
	roleControllers = "controllers"
	roleWebhook     = "webhook"
	roleAuthz       = "authz"
)

var allRoles = []string{roleControllers, roleWebhook, roleAuthz}

// options are the manager's command-line settings.
type options struct {
	roles                   []string
	metricsAddr             string
	metricsSecure           bool
	metricsCertDir          string
	probeAddr               string
	leaderElect             bool
	leaderElectionNamespace string
	leaderElectionID        string
	webhookPort             int
	webhookCertDir          string
	webhookCertMode         string
	webhookSecret           string
	webhookConfiguration    string
	webhookService          string
	webhookCertHosts        string
	webhookCertValidity     time.Duration
	webhookCAValidity       time.Duration
	webhookCAPropagation    time.Duration
	shutdownDelay           time.Duration
	namespace               string
	gracefulShutdown        time.Duration
	authzGRPCAddr           string
	authzHTTPAddr           string
	authzCertDir            string
	gateway                 string
	kubeAPIQPS              float64
	kubeAPIBurst            int
	policyReports           bool
	installPolicyReportCRD  bool
	authzService            string
	authzForwardAuthURL     string
	zap                     zap.Options
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	roles := fs.String("roles", strings.Join(allRoles, ","),
		"Comma-separated roles this replica runs: controllers (leader-elected reconcilers), webhook (admission), authz (ext_authz and forward-auth).")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", "", "Address of the Prometheus metrics endpoint (default :8443, or :8080 with --metrics-secure=false); \"0\" turns it off.")
	fs.BoolVar(&o.metricsSecure, "metrics-secure", true,
		"Serve metrics over HTTPS to authorised clients only: each scrape carries a bearer token, which the apiserver authenticates (TokenReview) and authorises for get on the non-resource URL /metrics (SubjectAccessReview). false serves plain HTTP to anyone who reaches the port.")
	fs.StringVar(&o.metricsCertDir, "metrics-cert-dir", "",
		"Directory holding tls.crt and tls.key for the secure metrics endpoint, reloaded when they change; when empty the endpoint serves a self-signed certificate made at start.")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
	fs.BoolVar(&o.leaderElect, "leader-elect", true, "Elect a leader among replicas for the controllers role; every replica still serves the webhook and authz roles.")
	fs.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader-election Lease; defaults to the pod's namespace in a cluster, and must be set outside one.")
	fs.StringVar(&o.leaderElectionID, "leader-election-id", "apiwarden.io", "Name of the leader-election Lease.")
	fs.IntVar(&o.webhookPort, "webhook-port", 9443, "Port of the admission webhook's HTTPS server.")
	fs.StringVar(&o.webhookCertDir, "webhook-cert-dir", "", "Directory holding tls.crt and tls.key for the webhook server; defaults to controller-runtime's temporary directory.")
	fs.StringVar(&o.webhookCertMode, "webhook-cert-mode", certModeFiles,
		"Where the webhook's serving certificate comes from: files (tls.crt and tls.key in --webhook-cert-dir, reloaded when they change; cert-manager writes them) or self-managed (the webhook replicas make a CA and certificate in --webhook-secret, inject the CA into --webhook-configuration and rotate both before they expire).")
	fs.StringVar(&o.webhookSecret, "webhook-secret", "apiwarden-webhook-cert", "Self-managed mode: the Secret, in --namespace, holding the webhook's CA and serving certificate.")
	fs.StringVar(&o.webhookConfiguration, "webhook-configuration", "apiwarden-validating-webhook-configuration", "Self-managed mode: the ValidatingWebhookConfiguration whose webhooks get the CA bundle.")
	fs.StringVar(&o.webhookService, "webhook-service", "apiwarden-webhook-service", "Self-managed mode: the webhook's Service in --namespace; its DNS names go into the serving certificate.")
	fs.StringVar(&o.webhookCertHosts, "webhook-cert-hosts", "", "Self-managed mode: comma-separated extra DNS names or IP addresses for the serving certificate, for an apiserver that calls the webhook by URL.")
	fs.DurationVar(&o.webhookCertValidity, "webhook-cert-validity", 90*24*time.Hour, "Self-managed mode: lifetime of the serving certificate; renewed when a third is left.")
	fs.DurationVar(&o.webhookCAValidity, "webhook-ca-validity", 3*365*24*time.Hour, "Self-managed mode: lifetime of the CA; renewed when a third is left, at least twice --webhook-cert-validity.")
	fs.DurationVar(&o.webhookCAPropagation, "webhook-ca-propagation", time.Minute, "Self-managed mode: how long a new CA is in the webhook configuration before certificates it signs are served (time for every apiserver to see it); at most a sixth of --webhook-cert-validity.")
	fs.StringVar(&o.namespace, "namespace", envOr("POD_NAMESPACE", "apiwarden-system"), "apiwarden's own namespace: never governed, and where the API-key pepper Secret lives; defaults to $POD_NAMESPACE, else apiwarden-system.")
	fs.StringVar(&o.authzGRPCAddr, "authz-grpc-bind-address", ":9001", "Address of the authz role's Envoy ext_authz gRPC server; \"0\" turns it off.")
	fs.StringVar(&o.authzHTTPAddr, "authz-http-bind-address", ":9002", "Address of the authz role's HTTP forward-auth server; \"0\" turns it off.")
	fs.StringVar(&o.authzCertDir, "authz-cert-dir", "", "Directory holding tls.crt and tls.key for the authz servers; when empty they serve plaintext, for a mesh or NetworkPolicy-protected pod network.")
	fs.StringVar(&o.gateway, "gateway", gateways.Default, "Gateway the APIPolicy controller programs: "+strings.Join(gateways.Names(), " or ")+".")
	fs.StringVar(&o.authzForwardAuthURL, "authz-forward-auth-url", "",
		"Base URL (scheme, host, port) at which gateways reach the authz role's forward-auth server, when not through --authz-service's DNS name (a gateway outside the cluster, a mesh); rendered forward-auth middlewares call it.")
	fs.StringVar(&o.authzService, "authz-service", "apiwarden-authz", "Name of the Service, in --namespace, in front of the authz servers (gRPC port 9001, HTTP port 9002); rendered gateway policies send ext_authz requests to it.")
	fs.Float64Var(&o.kubeAPIQPS, "kube-api-qps", 200, "Client-side limit on requests per second to the apiserver (the apiserver's own priority and fairness still applies).")
	fs.IntVar(&o.kubeAPIBurst, "kube-api-burst", 400, "Requests allowed above --kube-api-qps in a burst.")
	fs.BoolVar(&o.policyReports, "policy-reports", true, "Keep a wgpolicyk8s.io/v1alpha2 PolicyReport named apiwarden in every namespace with governed exposed objects (controllers role), once the PolicyReport CRD exists.")
	fs.BoolVar(&o.installPolicyReportCRD, "install-policyreport-crd", true, "Install the PolicyReport CRD (as Kyverno ships it) when the cluster does not have it; an existing one is never changed.")
	fs.DurationVar(&o.gracefulShutdown, "graceful-shutdown-timeout", 30*time.Second, "How long to wait for in-flight requests and reconciles on shutdown.")
	fs.DurationVar(&o.shutdownDelay, "shutdown-delay", 5*time.Second,
		"On SIGTERM, how long the replica reports not ready and keeps serving before it stops accepting requests, so that endpoints stop routing to it first; then in-flight requests drain within --graceful-shutdown-timeout.")
	o.zap.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	seen := map[string]bool{}
	for _, r := range strings.Split(*roles, ",") {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		if !slices.Contains(allRoles, r) {
			return nil, fmt.Errorf("--roles: unknown role %q; valid roles are %s", r, strings.Join(allRoles, ", "))
		}
		if !seen[r] {
			seen[r] = true
			o.roles = append(o.roles, r)
		}
	}
	if len(o.roles) == 0 {
		return nil, fmt.Errorf("--roles: at least one of %s is required", strings.Join(allRoles, ", "))
	}
	if _, err := gateways.Get(o.gateway); err != nil {
		return nil, fmt.Errorf("--gateway: %w", err)
	}
	if o.kubeAPIQPS <= 0 || o.kubeAPIBurst < 1 {
		return nil, fmt.Errorf("--kube-api-qps and --kube-api-burst must be positive")
	}
	if o.webhookPort < 1 || o.webhookPort > 65535 {
		return nil, fmt.Errorf("--webhook-port: %d is not a TCP port", o.webhookPort)
	}
	switch o.webhookCertMode {
	case certModeFiles:
	case certModeSelfManaged:
		if err := o.certConfig().Validate(); err != nil {
			return nil, fmt.Errorf("--webhook-cert-mode=self-managed: %w", err)
		}
	default:
		return nil, fmt.Errorf("--webhook-cert-mode: %q is neither %s nor %s", o.webhookCertMode, certModeFiles, certModeSelfManaged)
	}
	if u := o.authzForwardAuthURL; u != "" {
		if parsed, err := url.Parse(u); err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" || (parsed.Path != "" && parsed.Path != "/") || parsed.RawQuery != "" {
			return nil, fmt.Errorf("--authz-forward-auth-url: %q is not a base URL such as http://authz.example:9002", u)
		}
	}
	if o.metricsAddr == "" {
		o.metricsAddr = ":8443"
		if !o.metricsSecure {
			o.metricsAddr = ":8080"
		}
	}
	if o.metricsCertDir != "" && !o.metricsSecure {
		return nil, errors.New("--metrics-cert-dir needs --metrics-secure: a plain HTTP endpoint serves no certificate")
	}
	if o.shutdownDelay < 0 || o.gracefulShutdown < 0 {
		return nil, errors.New("--shutdown-delay and --graceful-shutdown-timeout cannot be negative")
	}
	return o, nil
}

func (o *options) has(role string) bool { return slices.Contains(o.roles, role) }

// Values of --webhook-cert-mode.
const (
	certModeFiles       = "files"
	certModeSelfManaged = "self-managed"
)

// The secure metrics endpoint asks the apiserver who a scrape's bearer token
// belongs to and whether it may get /metrics.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// metricsOptions configures the metrics endpoint. Secure, it serves TLS
// over HTTP/1.1 only (HTTP/2's rapid-reset and stream floods are not worth
// it for one scrape a minute) and answers only requests whose bearer token
// the apiserver authenticates and authorises for get on /metrics.
// controller-runtime caches a token's authentication for a minute, an allow
// for five and a deny for thirty seconds, so scraping costs the apiserver a
// few reviews per scraper every few minutes, and a revoked binding takes up
// to five minutes to shut a scraper out.
func (o *options) metricsOptions() metricsserver.Options {
	m := metricsserver.Options{BindAddress: o.metricsAddr}
	if !o.metricsSecure {
		return m
	}
	m.SecureServing = true
	m.CertDir = o.metricsCertDir
	m.FilterProvider = filters.WithAuthenticationAndAuthorization
	m.TLSOpts = []func(*tls.Config){func(c *tls.Config) {
		c.NextProtos = []string{"http/1.1"}
		c.MinVersion = tls.VersionTLS12
	}}
	return m
}

// certConfig is the self-managed certificate's configuration: the
// Service's DNS names, then the extra hosts.
func (o *options) certConfig() webhookcert.Config {
	svc, ns := o.webhookService, o.namespace
	hosts := []string{svc + "." + ns + ".svc", svc + "." + ns + ".svc.cluster.local", svc + "." + ns, svc}
	for _, h := range strings.Split(o.webhookCertHosts, ",") {
		if h = strings.TrimSpace(h); h != "" && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return webhookcert.Config{Hosts: hosts, CertValidity: o.webhookCertValidity, CAValidity: o.webhookCAValidity, Propagation: o.webhookCAPropagation}
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func main() {
	if err := run(ctrl.SetupSignalHandler(), os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "apiwarden manager: %v\n", err)
		os.Exit(1)
	}
}

// run starts the manager and blocks until ctx is cancelled (SIGTERM or
// SIGINT) and every runnable has stopped.
func run(ctx context.Context, args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&o.zap)))
	log := ctrl.Log.WithName("setup")
	log.Info("Starting apiwarden manager", "version", version.Version, "roles", o.roles)

	if o.metricsCertDir != "" {
		// controller-runtime would fall back to a self-signed certificate
		// when the files are missing; a certificate asked for and not
		// served is a misconfiguration to report, not to hide.
		for _, f := range []string{"tls.crt", "tls.key"} {
			if _, err := os.Stat(filepath.Join(o.metricsCertDir, f)); err != nil {
				return fmt.Errorf("--metrics-cert-dir: %w", err)
			}
		}
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	// controller-runtime's default (20/s, bursts of 30) makes a burst of
	// new policies wait on the client: each costs three writes.
	cfg.QPS, cfg.Burst = float32(o.kubeAPIQPS), o.kubeAPIBurst

	mgrOpts := ctrl.Options{
		Scheme:                  scheme.New(),
		Metrics:                 o.metricsOptions(),
		HealthProbeBindAddress:  o.probeAddr,
		LeaderElection:          o.leaderElect && o.has(roleControllers),
		LeaderElectionID:        o.leaderElectionID,
		LeaderElectionNamespace: o.leaderElectionNamespace,
		// Releasing the Lease on shutdown lets the next leader take over at
		// once instead of waiting for the lease to expire.
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       &o.gracefulShutdown,
	}
	// Keep managedFields and kubectl's last-applied copy out of the
	// informer caches (apiwarden never reads them, and they are often the
	// largest part of an object), and of ConfigMaps cache only the
	// admission params apiwarden writes.
	mgrOpts.Cache = controllers.CacheOptions()
	mgrOpts.EventBroadcaster = controllers.EventBroadcaster() //nolint:staticcheck // see controllers.EventBroadcaster
	var keeper *webhookcert.Keeper
	if o.has(roleWebhook) {
		whOpts := webhook.Options{Port: o.webhookPort, CertDir: o.webhookCertDir}
		if o.webhookCertMode == certModeSelfManaged {
			keeper, err = webhookcert.New(cfg, webhookcert.Options{
				Config: o.certConfig(), Namespace: o.namespace, SecretName: o.webhookSecret,
				WebhookConfiguration: o.webhookConfiguration, Registerer: metrics.Registry,
				Log: ctrl.Log.WithName("webhook-certificate"),
			})
			if err != nil {
				return fmt.Errorf("--webhook-cert-mode=self-managed: %w", err)
			}
			// The certificate is served from memory the moment the
			// Secret changes: no file, no kubelet volume refresh.
			whOpts.TLSOpts = append(whOpts.TLSOpts, func(c *tls.Config) { c.GetCertificate = keeper.GetCertificate })
		}
		mgrOpts.WebhookServer = webhook.NewServer(whOpts)
	}
	mgr, err := ctrl.NewManager(cfg, mgrOpts)
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	if keeper != nil {
		if err := mgr.Add(keeper); err != nil {
			return fmt.Errorf("adding the webhook certificate keeper: %w", err)
		}
		if err := mgr.AddReadyzCheck("webhook-certificate", keeper.Ready); err != nil {
			return fmt.Errorf("adding the webhook certificate readiness check: %w", err)
		}
	}

	// On SIGTERM the replica first reports not ready and keeps serving for
	// --shutdown-delay, while endpoints stop sending it requests; only then
	// does the manager stop, draining in-flight admission and authz
	// requests. mgrCtx is the manager's lifetime.
	mgrCtx, stopManager := context.WithCancel(context.WithoutCancel(ctx))
	defer stopManager()
	var draining atomic.Bool
	go func() {
		select {
		case <-ctx.Done():
		case <-mgrCtx.Done():
			return
		}
		draining.Store(true)
		log.Info("Shutting down: reporting not ready and serving for the shutdown delay", "delay", o.shutdownDelay)
		delay := time.NewTimer(o.shutdownDelay)
		defer delay.Stop()
		select {
		case <-delay.C:
		case <-mgrCtx.Done():
		}
		stopManager()
	}()
	if err := mgr.AddReadyzCheck("shutdown", func(*http.Request) error {
		if draining.Load() {
			return errors.New("shutting down")
		}
		return nil
	}); err != nil {
		return fmt.Errorf("adding the shutdown readiness check: %w", err)
	}

	if o.has(roleControllers) {
		if err := (&controllers.APIKeySetReconciler{
			Client: mgr.GetClient(), Recorder: mgr.GetEventRecorderFor("apiwarden"), Namespace: o.namespace,
			Registerer: metrics.Registry,
		}).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the APIKeySet controller: %w", err)
		}
		renderer, _ := gateways.Get(o.gateway)
		if err := (&controllers.APIPolicyReconciler{
			Client: mgr.GetClient(), Recorder: mgr.GetEventRecorderFor("apiwarden"), Renderer: renderer,
			Authz:      render.AuthzService{Namespace: o.namespace, Name: o.authzService, GRPCPort: 9001, HTTPPort: 9002, HTTPURL: o.authzForwardAuthURL},
			Registerer: metrics.Registry,
		}).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the APIPolicy controller: %w", err)
		}
		if err := (&controllers.APIBaselineReconciler{
			Client: mgr.GetClient(), Recorder: mgr.GetEventRecorderFor("apiwarden"), Namespace: o.namespace,
			Registerer: metrics.Registry,
		}).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the APIBaseline coverage controller: %w", err)
		}
		if err := (&controllers.AdmissionPolicyReconciler{Client: mgr.GetClient(), Namespace: o.namespace}).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the admission policy compiler: %w", err)
		}
		if err := (&controllers.AdmissionParamsReconciler{Client: mgr.GetClient(), Namespace: o.namespace}).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the admission params controller: %w", err)
		}
		if o.policyReports {
			if err := (&controllers.PolicyReportReconciler{
				Client: mgr.GetClient(), Namespace: o.namespace, InstallCRD: o.installPolicyReportCRD,
			}).SetupWithManager(mgr); err != nil {
				return fmt.Errorf("setting up the PolicyReport controller: %w", err)
			}
		}
	}
	if o.has(roleWebhook) {
		gatewayAPI, err := gatewayAPIInstalled(mgr)
		if err != nil {
			return err
		}
		if !gatewayAPI {
			log.Info("Gateway API CRDs are not installed; after installing them, restart apiwarden so the APIPolicy guard sees routes attached to Gateways")
		}
		admissionMetrics, err := webhooks.NewMetrics(metrics.Registry)
		if err != nil {
			return fmt.Errorf("registering admission metrics: %w", err)
		}
		store, err := webhooks.Setup(mgrCtx, mgr, webhooks.Options{OwnNamespace: o.namespace, Metrics: admissionMetrics}, gatewayAPI)
		if err != nil {
			return fmt.Errorf("setting up admission webhooks: %w", err)
		}
		if err := mgr.AddReadyzCheck("admission-store", func(*http.Request) error {
			if !store.Synced() {
				return errors.New("the admission store has not received every policy, baseline and namespace yet")
			}
			return nil
		}); err != nil {
			return fmt.Errorf("adding admission readiness check: %w", err)
		}
	}
	if o.has(roleAuthz) {
		svc, err := authz.Setup(mgrCtx, mgr, authz.Options{
			Namespace: o.namespace, GRPCAddr: o.authzGRPCAddr, HTTPAddr: o.authzHTTPAddr, CertDir: o.authzCertDir,
			Registerer: metrics.Registry,
		})
		if err != nil {
			return fmt.Errorf("setting up the authz service: %w", err)
		}
		if err := mgr.AddReadyzCheck("authz", svc.Ready); err != nil {
			return fmt.Errorf("adding authz readiness check: %w", err)
		}
	}

	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("adding health check: %w", err)
	}
	// Ready only once the informer caches have synced, so a replica never
	// answers admission or authz requests from an empty cache.
	if err := mgr.AddReadyzCheck("informers", cacheSynced(mgr)); err != nil {
		return fmt.Errorf("adding readiness check: %w", err)
	}
	if o.has(roleWebhook) {
		if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
			return fmt.Errorf("adding webhook readiness check: %w", err)
		}
	}

	log.Info("Starting manager", "metrics", o.metricsAddr, "probes", o.probeAddr,
		"leaderElection", mgrOpts.LeaderElection)
	if err := mgr.Start(mgrCtx); err != nil {
		return fmt.Errorf("running manager: %w", err)
	}
	log.Info("Manager stopped")
	return nil
}

// gatewayAPIInstalled reports whether the Gateway API v1 CRDs the webhook
// admits are served by the apiserver.
func gatewayAPIInstalled(mgr ctrl.Manager) (bool, error) {
	for _, kind := range []string{"Gateway", "HTTPRoute", "GRPCRoute"} {
		_, err := mgr.GetRESTMapper().RESTMapping(gatewayv1.SchemeGroupVersion.WithKind(kind).GroupKind(), gatewayv1.SchemeGroupVersion.Version)
		if meta.IsNoMatchError(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("discovering %s: %w", kind, err)
		}
	}
	return true, nil
}

// cacheSynced is a readiness check that passes once the manager's informer
// caches have synced.
func cacheSynced(mgr ctrl.Manager) healthz.Checker {
	return func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), 100*time.Millisecond)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return errors.New("informer caches have not synced")
		}
		return nil
	}
}
