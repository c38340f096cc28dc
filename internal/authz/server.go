package authz

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/keystore"
)

// Options configure the authz service.
type Options struct {
	// Namespace is apiwarden's namespace, where the pepper Secret lives.
	Namespace string
	// GRPCAddr and HTTPAddr are the listen addresses of the ext_authz and
	// forward-auth servers; "0" turns one off.
	GRPCAddr, HTTPAddr string
	// CertDir, when set, holds tls.crt and tls.key: both servers then speak
	// TLS, and reload the certificate when the files change.
	CertDir string
	// UsageInterval is how often key usage is written to APIKeySet status and
	// failing clients are logged (default one minute).
	UsageInterval time.Duration
	// FailureThreshold is the number of refused requests from one client
	// address in a UsageInterval that gets the address logged (default 20).
	FailureThreshold int
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
	// Now returns the time; tests inject a clock.
	Now func() time.Time
}

// Service is the authz service as a manager runnable.
type Service struct {
	opts   Options
	store  *Store
	reader client.Reader
	client client.Client
	log    logr.Logger

	informers []cache.Informer
	grpcLn    net.Listener
	httpLn    net.Listener
}

// Setup creates the authz service, wires it to the manager's informers and
// adds it to the manager. Hash-store Secrets are read through a cache of
// their own that holds only Secrets labelled apiwarden.io/hash-store=true, so
// no other Secret is ever cached. Listeners are opened here, so a port in
// use fails the start.
func Setup(ctx context.Context, mgr ctrl.Manager, o Options) (*Service, error) {
	if o.UsageInterval <= 0 {
		o.UsageInterval = time.Minute
	}
	if o.FailureThreshold <= 0 {
		o.FailureThreshold = 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Service{
		opts: o, store: NewStore(o.Namespace, NewMetrics(o.Registerer)),
		reader: mgr.GetAPIReader(), client: mgr.GetClient(), log: mgr.GetLogger().WithName("authz"),
	}
	secrets, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(), HTTPClient: mgr.GetHTTPClient(),
		// Hash stores live in apiwarden's namespace: the service reads no
		// Secret anywhere else, and needs no cluster-wide Secret access.
		DefaultNamespaces:    map[string]cache.Config{o.Namespace: {}},
		DefaultLabelSelector: labels.SelectorFromSet(labels.Set{keystore.LabelHashStore: "true"}),
		DefaultTransform:     cache.TransformStripManagedFields(),
	})
	if err != nil {
		return nil, fmt.Errorf("creating the hash-store cache: %w", err)
	}
	if err := mgr.Add(secrets); err != nil {
		return nil, err
	}
	si, err := secrets.GetInformer(ctx, &corev1.Secret{}, cache.BlockUntilSynced(false))
	if err != nil {
		return nil, fmt.Errorf("watching hash stores: %w", err)
	}
	pi, err := mgr.GetCache().GetInformer(ctx, &apiwardenv1alpha1.APIPolicy{}, cache.BlockUntilSynced(false))
	if err != nil {
		return nil, fmt.Errorf("watching APIPolicies: %w", err)
	}
	if _, err := si.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    s.upsertSecret,
		UpdateFunc: func(_, obj any) { s.upsertSecret(obj) },
		DeleteFunc: func(obj any) {
			if sec, ok := unwrap(obj).(*corev1.Secret); ok {
				if ns, set, ok := keystore.IsHashStoreOf(sec); ok {
					s.store.DeleteHashStore(ns, set)
				}
			}
		},
	}); err != nil {
		return nil, err
	}
	if _, err := pi.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    s.upsertPolicy,
		UpdateFunc: func(_, obj any) { s.upsertPolicy(obj) },
		DeleteFunc: func(obj any) {
			if p, ok := unwrap(obj).(*apiwardenv1alpha1.APIPolicy); ok {
				s.store.DeletePolicy(p.Namespace, p.Name)
			}
		},
	}); err != nil {
		return nil, err
	}
	s.informers = []cache.Informer{si, pi}
	if s.grpcLn, err = listen(o.GRPCAddr); err != nil {
		return nil, fmt.Errorf("authz gRPC listener: %w", err)
	}
	if s.httpLn, err = listen(o.HTTPAddr); err != nil {
		return nil, fmt.Errorf("authz HTTP listener: %w", err)
	}
	return s, mgr.Add(s)
}

func listen(addr string) (net.Listener, error) {
	if addr == "" || addr == "0" {
		return nil, nil
	}
	return net.Listen("tcp", addr)
}

func unwrap(obj any) any {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		return d.Obj
	}
	return obj
}

func (s *Service) upsertSecret(obj any) {
	sec, ok := obj.(*corev1.Secret)
	if !ok {
		return
	}
	if err := s.store.UpsertHashStore(sec); err != nil {
		// The error names the Secret, never a key: keys are not in it.
		s.log.Error(err, "Ignoring a corrupt hash store; its keys are refused until the APIKeySet controller rewrites it")
	}
}

func (s *Service) upsertPolicy(obj any) {
	if p, ok := obj.(*apiwardenv1alpha1.APIPolicy); ok {
		s.store.UpsertPolicy(p)
	}
}

// Store returns the service's store.
func (s *Service) Store() *Store { return s.store }

// GRPCAddr and HTTPAddr return the addresses the servers listen on.
func (s *Service) GRPCAddr() net.Addr { return addrOf(s.grpcLn) }

// HTTPAddr returns the address of the forward-auth server.
func (s *Service) HTTPAddr() net.Addr { return addrOf(s.httpLn) }

func addrOf(l net.Listener) net.Addr {
	if l == nil {
		return nil
	}
	return l.Addr()
}

// Ready is a readiness check: informers synced and pepper loaded.
func (s *Service) Ready(*http.Request) error {
	if !s.store.Ready() {
		return errors.New("the authz service has not loaded its policies, hash stores and pepper yet")
	}
	return nil
}

// NeedLeaderElection is false: every replica serves authz.
func (s *Service) NeedLeaderElection() bool { return false }

// Start serves until ctx is cancelled, then drains in-flight checks.
func (s *Service) Start(ctx context.Context) error {
	var tlsConf *tls.Config
	if s.opts.CertDir != "" {
		w, err := certwatcher.New(filepath.Join(s.opts.CertDir, "tls.crt"), filepath.Join(s.opts.CertDir, "tls.key"))
		if err != nil {
			return fmt.Errorf("loading the authz certificate: %w", err)
		}
		go func() { _ = w.Start(ctx) }()
		tlsConf = &tls.Config{GetCertificate: w.GetCertificate, MinVersion: tls.VersionTLS12}
	}
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	errc := make(chan error, 2)
	var gs *grpc.Server
	if s.grpcLn != nil {
		// Stream workers reuse goroutines instead of starting one per call.
		opts := []grpc.ServerOption{grpc.MaxRecvMsgSize(1 << 20), grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0)))}
		if tlsConf != nil {
			opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConf)))
		}
		gs = grpc.NewServer(opts...)
		authv3.RegisterAuthorizationServer(gs, NewGRPCServer(s.store, s.opts.Now))
		healthpb.RegisterHealthServer(gs, hs)
		go func() { errc <- gs.Serve(s.grpcLn) }()
	}
	var hsrv *http.Server
	if s.httpLn != nil {
		mux := http.NewServeMux()
		mux.Handle(ForwardAuthPrefix, HTTPHandler(s.store, s.opts.Now))
		hsrv = &http.Server{
			Handler: mux, TLSConfig: tlsConf, MaxHeaderBytes: 64 << 10,
			ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
			ErrorLog: nil,
		}
		ln := s.httpLn
		if tlsConf != nil {
			ln = tls.NewListener(ln, tlsConf)
		}
		go func() {
			if err := hsrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	s.log.Info("Serving authz", "grpc", addrOf(s.grpcLn), "http", addrOf(s.httpLn), "tls", tlsConf != nil)

	go s.load(ctx, hs)
	tick := time.NewTicker(s.opts.UsageInterval)
	defer tick.Stop()
	for {
		select {
		case err := <-errc:
			return fmt.Errorf("authz server: %w", err)
		case <-tick.C:
			s.report(ctx)
		case <-ctx.Done():
			hs.Shutdown()
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if hsrv != nil {
				_ = hsrv.Shutdown(sctx)
			}
			if gs != nil {
				done := make(chan struct{})
				go func() { gs.GracefulStop(); close(done) }()
				select {
				case <-done:
				case <-sctx.Done():
					gs.Stop()
				}
			}
			// The last usage report, bounded: an unreachable apiserver
			// must not hold the shutdown past its grace period.
			rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
			s.report(rctx)
			rcancel()
			return nil
		}
	}
}

// load waits for the informers, then loads the pepper, which the
// controllers role creates (this service only reads it, so its account
// needs no Secret create), and re-reads it every minute in case it is
// recreated.
func (s *Service) load(ctx context.Context, hs *health.Server) {
	if !toolscache.WaitForCacheSync(ctx.Done(), func() bool {
		for _, i := range s.informers {
			if !i.HasSynced() {
				return false
			}
		}
		return true
	}) {
		return
	}
	s.store.MarkSynced()
	var last []byte
	for wait := time.Duration(0); ; {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		p, err := keystore.LoadPepper(ctx, s.reader, s.opts.Namespace)
		if err != nil {
			if apierrors.IsNotFound(err) {
				s.log.Info("Waiting for the controllers to create the pepper Secret; checks answer 503 until it loads", "namespace", s.opts.Namespace, "secret", keystore.PepperSecret)
			} else {
				s.log.Error(err, "Loading the pepper; checks answer 503 until it loads")
			}
			wait = 5 * time.Second
			continue
		}
		if !bytes.Equal(p, last) {
			if err := s.store.SetPepper(p); err != nil {
				s.log.Error(err, "The pepper is unusable")
				wait = 5 * time.Second
				continue
			}
			last = bytes.Clone(p)
			hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			s.log.Info("Authz ready", "store", s.store.String())
		}
		wait = time.Minute
	}
}

// report writes key usage to APIKeySet status (once per interval, never per
// request) and logs the client addresses with many refused requests.
func (s *Service) report(ctx context.Context) {
	clients, other := s.store.failures.drain(s.opts.FailureThreshold)
	if s.store.metrics != nil {
		s.store.metrics.failingClients.Set(float64(len(clients)))
	}
	for _, c := range clients {
		s.log.Info("Client made many refused requests", "client", c.Client, "refused", c.Failures, "window", s.opts.UsageInterval.String())
	}
	if other > 0 {
		s.log.Info("Refused requests from addresses beyond the tracking bound", "refused", other, "window", s.opts.UsageInterval.String())
	}
	bySet := map[client.ObjectKey][]KeyUsage{}
	for _, u := range s.store.Usage() {
		k := client.ObjectKey{Namespace: u.Namespace, Name: u.KeySet}
		bySet[k] = append(bySet[k], u)
	}
	for key, us := range bySet {
		if !s.usageBehind(ctx, key, us) {
			continue
		}
		if err := s.writeUsage(ctx, key, us); err != nil {
			s.log.Error(err, "Writing key usage to status", "apikeyset", key.String())
		}
	}
}

// usageBehind reports whether the cached APIKeySet status shows an older
// lastUsed than this replica knows for one of its keys. Comparing with the
// status every time, rather than remembering what was written, repairs a
// value that a concurrent status write of the controller replaced.
func (s *Service) usageBehind(ctx context.Context, key client.ObjectKey, us []KeyUsage) bool {
	var ks apiwardenv1alpha1.APIKeySet
	if err := s.client.Get(ctx, key, &ks); err != nil {
		return !apierrors.IsNotFound(err)
	}
	inStatus := map[string]*metav1.Time{}
	for _, c := range ks.Status.Consumers {
		for _, k := range c.Keys {
			inStatus[k.ID] = k.LastUsed
		}
	}
	for _, u := range us {
		t, ok := inStatus[u.ID]
		if ok && (t == nil || t.Time.Before(u.LastUsed.Truncate(time.Minute))) {
			return true
		}
		if !ok && u.Pending {
			s.store.MarkReported(u.ID, u.LastUsed) // the key is gone from status
		}
	}
	return false
}

func (s *Service) writeUsage(ctx context.Context, key client.ObjectKey, us []KeyUsage) error {
	last := map[string]time.Time{}
	for _, u := range us {
		last[u.ID] = u.LastUsed.Truncate(time.Minute)
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var ks apiwardenv1alpha1.APIKeySet
		if err := s.reader.Get(ctx, key, &ks); err != nil {
			return err
		}
		changed := false
		for i := range ks.Status.Consumers {
			for j := range ks.Status.Consumers[i].Keys {
				k := &ks.Status.Consumers[i].Keys[j]
				t, ok := last[k.ID]
				if ok && (k.LastUsed == nil || k.LastUsed.Time.Before(t)) {
					mt := metav1.NewTime(t)
					k.LastUsed, changed = &mt, true
				}
			}
		}
		if !changed {
			return nil
		}
		return s.client.Status().Update(ctx, &ks)
	})
	if apierrors.IsNotFound(err) {
		err = nil
	}
	if err == nil {
		for _, u := range us {
			s.store.MarkReported(u.ID, u.LastUsed)
		}
	}
	return err
}
