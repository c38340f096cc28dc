package webhookcert

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
)

// Labels on the Secret: apiwarden writes only Secrets it labels.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelComponent = "app.kubernetes.io/component"
)

// Options configure a Keeper.
type Options struct {
	Config
	// Namespace and SecretName locate the Secret holding the CA and the
	// serving certificate.
	Namespace  string
	SecretName string
	// WebhookConfiguration is the ValidatingWebhookConfiguration whose
	// webhooks get the CA bundle.
	WebhookConfiguration string
	// Registerer, when set, receives the certificate expiry gauge.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log receives rotation and injection messages (never key material).
	Log logr.Logger
}

// Keeper keeps the Secret, serves its certificate and injects its CA
// bundle. Every webhook replica runs one; it needs no leader election.
type Keeper struct {
	opts   Options
	client kubernetes.Interface
	secret toolscache.SharedIndexInformer
	vwc    toolscache.SharedIndexInformer
	poke   chan struct{}

	cert  atomic.Pointer[tls.Certificate]
	mu    sync.Mutex
	ready error // why the replica is not ready, nil once it is
	// trusted is set once the webhook configuration first trusted this
	// replica's certificate: from then on a trust problem is logged, not
	// reported as unready, since readiness is the whole pod's and would
	// also take its authz endpoints out of service.
	trusted bool
	// expiry is apiwarden_webhook_certificate_expiry_timestamp_seconds.
	expiry *prometheus.GaugeVec
}

// New checks the options and builds a Keeper for the cluster at cfg.
func New(cfg *rest.Config, opts Options) (*Keeper, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if opts.Namespace == "" || opts.SecretName == "" || opts.WebhookConfiguration == "" {
		return nil, errors.New("the Secret's namespace and name and the webhook configuration's name are required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	k := &Keeper{opts: opts, client: cs, poke: make(chan struct{}, 1), ready: errors.New("no serving certificate loaded yet")}
	// One informer per object, each listing and watching that object only
	// (a metadata.name field selector, which RBAC can limit by name).
	secrets := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(opts.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", opts.SecretName).String()
		}))
	k.secret = secrets.Core().V1().Secrets().Informer()
	vwcs := informers.NewSharedInformerFactoryWithOptions(cs, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", opts.WebhookConfiguration).String()
		}))
	k.vwc = vwcs.Admissionregistration().V1().ValidatingWebhookConfigurations().Informer()
	for _, inf := range []toolscache.SharedIndexInformer{k.secret, k.vwc} {
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { k.wake() },
			UpdateFunc: func(any, any) { k.wake() },
			DeleteFunc: func(any) { k.wake() },
		}); err != nil {
			return nil, err
		}
	}
	if opts.Registerer != nil {
		k.expiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "apiwarden_webhook_certificate_expiry_timestamp_seconds",
			Help: "When the self-managed webhook certificate this replica serves (certificate=serving) and the CA that signs new ones (certificate=ca) expire, in Unix seconds.",
		}, []string{"certificate"})
		if err := opts.Registerer.Register(k.expiry); err != nil {
			return nil, fmt.Errorf("registering the certificate expiry metric: %w", err)
		}
	}
	return k, nil
}

// NeedLeaderElection is false: every replica serves the webhook, so every
// replica keeps its certificate; concurrent writers are resolved by the
// Secret's resourceVersion.
func (k *Keeper) NeedLeaderElection() bool { return false }

// GetCertificate is the webhook server's tls.Config.GetCertificate: the
// Secret's serving certificate, as soon as this replica has read it.
func (k *Keeper) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := k.cert.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("no webhook serving certificate loaded yet")
}

// Ready is a readiness check: true once this replica serves a certificate
// and the webhook configuration trusts the CA that signed it.
func (k *Keeper) Ready(*http.Request) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.ready
}

func (k *Keeper) setReady(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.ready = err
}

func (k *Keeper) wake() {
	select {
	case k.poke <- struct{}{}:
	default:
	}
}

// Start runs the informers and keeps the certificate until ctx ends.
func (k *Keeper) Start(ctx context.Context) error {
	go k.secret.Run(ctx.Done())
	go k.vwc.Run(ctx.Done())
	if !toolscache.WaitForCacheSync(ctx.Done(), k.secret.HasSynced, k.vwc.HasSynced) {
		return nil
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	backoff := time.Second
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-k.poke:
		}
		wake, err := k.sync(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			k.opts.Log.Error(err, "Keeping the webhook certificate failed; retrying", "retryIn", backoff)
			wake = k.opts.Now().Add(backoff)
			backoff = min(2*backoff, time.Minute)
		} else {
			backoff = time.Second
		}
		timer.Reset(max(wake.Sub(k.opts.Now()), 0))
	}
}

// sync makes the Secret hold what Decide says, serves its certificate and
// injects its bundle. It returns when to run again.
func (k *Keeper) sync(ctx context.Context) (time.Time, error) {
	now := k.opts.Now()
	var cur *State
	why := "no Secret " + k.opts.Namespace + "/" + k.opts.SecretName
	existing, err := k.cachedSecret()
	if err != nil {
		return time.Time{}, err
	}
	if existing != nil && existing.Labels[LabelManagedBy] != "apiwarden" {
		// Never overwrite a Secret apiwarden did not make: a mistaken
		// --webhook-secret must not destroy someone's data.
		err := fmt.Errorf("secret %s/%s exists and is not labelled %s=apiwarden; apiwarden does not overwrite it: delete it or choose another --webhook-secret", k.opts.Namespace, k.opts.SecretName, LabelManagedBy)
		k.setReady(err)
		k.opts.Log.Error(err, "Not keeping the webhook certificate")
		return now.Add(30 * time.Second), nil
	}
	if existing != nil {
		if cur, err = Parse(existing.Data, existing.Annotations); err != nil {
			why = "the Secret is unusable: " + err.Error()
			cur = nil
		}
	}
	d, err := Decide(cur, why, k.opts.Config, now, rand.Reader)
	if err != nil {
		return time.Time{}, err
	}
	if d.Changed && MovesToNewCA(cur, d.State) && !k.vwcTrusts(d.State.Leaf, now) {
		// The new CA has been in the Secret long enough, but the webhook
		// configuration does not have it yet (an injection that failed or
		// lost a race): keep serving the current certificate until it does.
		k.opts.Log.Info("Waiting for the webhook configuration to trust the new CA before serving a certificate it signed")
		d = Decision{State: cur, Wake: now.Add(time.Second)}
	}
	secretVersion := ""
	if existing != nil {
		secretVersion = existing.ResourceVersion
	}
	if d.Changed {
		written, err := k.write(ctx, existing, d.State)
		if err != nil {
			if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
				// Another replica wrote first: its Secret arrives
				// through the informer and is decided on again.
				k.opts.Log.V(1).Info("Another replica renewed the webhook certificate first")
				return now.Add(time.Second), nil
			}
			return time.Time{}, fmt.Errorf("writing Secret %s/%s: %w", k.opts.Namespace, k.opts.SecretName, err)
		}
		secretVersion = written.ResourceVersion
		k.opts.Log.Info("Renewed the webhook certificate", "secret", k.opts.Namespace+"/"+k.opts.SecretName,
			"reasons", d.Reasons, "serial", d.State.Leaf.SerialNumber.Text(16), "notAfter", d.State.Leaf.NotAfter.UTC(),
			"caSerial", d.State.CA.SerialNumber.Text(16), "caNotAfter", d.State.CA.NotAfter.UTC(), "trustedCAs", len(d.State.Trusted))
	}
	k.serve(d.State)
	if err := k.inject(ctx, d.State, secretVersion); err != nil {
		return time.Time{}, err
	}
	return d.Wake, nil
}

func (k *Keeper) cachedSecret() (*corev1.Secret, error) {
	obj, ok, err := k.secret.GetStore().GetByKey(k.opts.Namespace + "/" + k.opts.SecretName)
	if err != nil || !ok {
		return nil, err
	}
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return nil, fmt.Errorf("unexpected %T in the Secret informer", obj)
	}
	return s, nil
}

// write creates or updates the Secret; an update carries the
// resourceVersion it was decided from, so of two replicas deciding at once
// one wins and the other gets a conflict.
func (k *Keeper) write(ctx context.Context, existing *corev1.Secret, s *State) (*corev1.Secret, error) {
	data, err := s.Data()
	if err != nil {
		return nil, err
	}
	if existing == nil {
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: k.opts.Namespace, Name: k.opts.SecretName, Annotations: s.Annotations(),
				Labels: map[string]string{LabelManagedBy: "apiwarden", LabelComponent: "webhook-certificate"},
			},
			Type: corev1.SecretTypeTLS,
			Data: data,
		}
		return k.client.CoreV1().Secrets(k.opts.Namespace).Create(ctx, secret, metav1.CreateOptions{FieldManager: "apiwarden"})
	}
	secret := existing.DeepCopy()
	if secret.Type != corev1.SecretTypeTLS {
		// The type is immutable: a Secret of another type is replaced.
		if err := k.client.CoreV1().Secrets(k.opts.Namespace).Delete(ctx, secret.Name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{ResourceVersion: &secret.ResourceVersion},
		}); err != nil {
			return nil, err
		}
		return k.write(ctx, nil, s)
	}
	secret.Data = data
	if secret.Annotations == nil {
		secret.Annotations = map[string]string{}
	}
	if secret.Labels == nil {
		secret.Labels = map[string]string{}
	}
	for a, v := range s.Annotations() {
		secret.Annotations[a] = v
	}
	secret.Labels[LabelManagedBy], secret.Labels[LabelComponent] = "apiwarden", "webhook-certificate"
	return k.client.CoreV1().Secrets(k.opts.Namespace).Update(ctx, secret, metav1.UpdateOptions{FieldManager: "apiwarden"})
}

// serve makes s's serving certificate the one this replica presents.
func (k *Keeper) serve(s *State) {
	if cur := k.cert.Load(); cur == nil || !bytes.Equal(cur.Leaf.Raw, s.Leaf.Raw) {
		k.cert.Store(s.TLSCertificate())
		k.opts.Log.Info("Serving a new webhook certificate", "serial", s.Leaf.SerialNumber.Text(16), "notAfter", s.Leaf.NotAfter.UTC())
	}
	if k.expiry != nil {
		k.expiry.WithLabelValues("serving").Set(float64(s.Leaf.NotAfter.Unix()))
		k.expiry.WithLabelValues("ca").Set(float64(s.CA.NotAfter.Unix()))
	}
}

// vwcTrusts reports whether the cached webhook configuration trusts leaf.
func (k *Keeper) vwcTrusts(leaf *x509.Certificate, now time.Time) bool {
	obj, ok, err := k.vwc.GetStore().GetByKey(k.opts.WebhookConfiguration)
	if err != nil || !ok {
		return false
	}
	vwc, ok := obj.(*admissionregistrationv1.ValidatingWebhookConfiguration)
	return ok && trusts(vwc, leaf, now) == nil
}

// inject puts s's bundle into every webhook of the configuration and says
// whether this replica is ready: its certificate's issuer is trusted there.
// s was decided from the Secret at secretVersion; a bundle is written only
// when that is still the Secret's latest version, so a replica whose cache
// lags never puts an older bundle back.
func (k *Keeper) inject(ctx context.Context, s *State, secretVersion string) error {
	obj, ok, err := k.vwc.GetStore().GetByKey(k.opts.WebhookConfiguration)
	if err != nil {
		return err
	}
	if !ok {
		// Nothing calls the webhook without its configuration; the
		// informer wakes the keeper when it appears.
		k.setReady(fmt.Errorf("ValidatingWebhookConfiguration %s does not exist; the CA bundle is injected when it is created", k.opts.WebhookConfiguration))
		return nil
	}
	vwc, ok := obj.(*admissionregistrationv1.ValidatingWebhookConfiguration)
	if !ok {
		return fmt.Errorf("unexpected %T in the webhook configuration informer", obj)
	}
	bundle := s.BundlePEM()
	changed := false
	vwc = vwc.DeepCopy()
	for i := range vwc.Webhooks {
		if !bytes.Equal(vwc.Webhooks[i].ClientConfig.CABundle, bundle) {
			vwc.Webhooks[i].ClientConfig.CABundle = bundle
			changed = true
		}
	}
	if changed {
		live, err := k.client.CoreV1().Secrets(k.opts.Namespace).Get(ctx, k.opts.SecretName, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading Secret %s/%s before injecting its bundle: %w", k.opts.Namespace, k.opts.SecretName, err)
		}
		if live.ResourceVersion != secretVersion {
			// The informer brings the newer Secret and wakes us.
			return nil
		}
		if _, err := k.client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Update(ctx, vwc, metav1.UpdateOptions{FieldManager: "apiwarden"}); err != nil {
			if apierrors.IsConflict(err) {
				// The informer brings the newer version and wakes us.
				return nil
			}
			return fmt.Errorf("injecting the CA bundle into ValidatingWebhookConfiguration %s: %w", vwc.Name, err)
		}
		k.opts.Log.Info("Injected the webhook CA bundle", "webhookConfiguration", vwc.Name, "trustedCAs", len(s.Trusted))
	}
	k.setTrusted(trusts(vwc, s.Leaf, k.opts.Now()))
	return nil
}

// setTrusted records whether the webhook configuration trusts this
// replica's certificate: readiness until the first time it does, a logged
// error afterwards.
func (k *Keeper) setTrusted(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil {
		k.trusted, k.ready = true, nil
		return
	}
	if !k.trusted {
		k.ready = err
		return
	}
	k.opts.Log.Error(err, "The webhook configuration does not trust this replica's certificate; admission requests to it fail until it does")
}

// trusts says whether every webhook of vwc trusts the issuer of leaf.
func trusts(vwc *admissionregistrationv1.ValidatingWebhookConfiguration, leaf *x509.Certificate, now time.Time) error {
	for _, w := range vwc.Webhooks {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(w.ClientConfig.CABundle) {
			return fmt.Errorf("webhook %s of %s has no CA bundle yet", w.Name, vwc.Name)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			return fmt.Errorf("webhook %s of %s does not trust this replica's certificate yet: %w", w.Name, vwc.Name, err)
		}
	}
	return nil
}
