// Command authz measures apiwarden's authz service against a floor — a
// server of the same kind that allows every request without looking at it —
// in one run, so results are ratios that survive a noisy machine. Both front
// ends are measured: Envoy ext_authz over gRPC and HTTP forward-auth, at
// several client concurrencies, on loopback with keep-alive.
//
// apiwarden's store holds one APIPolicy with three authorization rules and a
// key set of -consumers consumers; every request carries a valid key of a
// different consumer. All traffic stays on 127.0.0.1; every loop is bounded by
// -requests.
//
//	go run ./test/bench/authz -consumers 10000 -requests 40000
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/apiwarden/apiwarden/test/bench/load"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
	"github.com/apiwarden/apiwarden/internal/authz"
	"github.com/apiwarden/apiwarden/internal/keys"
	"github.com/apiwarden/apiwarden/internal/keystore"
)

type config struct {
	consumers   int
	requests    int
	rounds      int
	concurrency []int
	rate        int
}

func main() {
	var cfg config
	var conc string
	flag.IntVar(&cfg.consumers, "consumers", 10000, "consumers (keys) in the key set")
	flag.IntVar(&cfg.requests, "requests", 40000, "requests per measurement")
	flag.IntVar(&cfg.rounds, "rounds", 3, "alternating floor/apiwarden rounds per setting; the median by throughput is reported")
	flag.StringVar(&conc, "concurrency", "1,8,64", "client concurrencies")
	flag.IntVar(&cfg.rate, "rate", 2000, "offered load (checks/s) of the fixed-rate latency measurement with 8 clients; 0 skips it")
	withAuthorino := flag.Bool("authorino", false, "compare with Authorino (built once by hack/authorino.sh) over gRPC instead, both in their own processes against an envtest apiserver; -consumers defaults to 1000 there")
	flag.Parse()
	for _, c := range strings.Split(conc, ",") {
		var n int
		if _, err := fmt.Sscan(c, &n); err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bad -concurrency %q\n", conc)
			os.Exit(2)
		}
		cfg.concurrency = append(cfg.concurrency, n)
	}
	runner := run
	if *withAuthorino {
		runner = runAuthorino
		if !flagSet("consumers") {
			cfg.consumers = 1000
		}
	}
	if err := runner(cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(cfg config) error {
	store, apiKeys, err := seed(cfg.consumers)
	if err != nil {
		return err
	}
	now := time.Now
	// gRPC servers.
	awGRPC, stopA, err := serveGRPC(authz.NewGRPCServer(store, now))
	if err != nil {
		return err
	}
	defer stopA()
	floorGRPC, stopF, err := serveGRPC(floorServer{})
	if err != nil {
		return err
	}
	defer stopF()
	// HTTP servers.
	awHTTP, stopAH, err := serveHTTP(authz.HTTPHandler(store, now))
	if err != nil {
		return err
	}
	defer stopAH()
	floorHTTP, stopFH, err := serveHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(authz.ConsumerHeader, "floor")
		w.WriteHeader(http.StatusOK)
	}))
	if err != nil {
		return err
	}
	defer stopFH()

	fmt.Printf("apiwarden authz vs floor: %d consumers, %d requests per measurement, median of %d rounds\n\n", cfg.consumers, cfg.requests, cfg.rounds)
	fmt.Println("| front end | clients | floor checks/s | apiwarden checks/s | ratio | floor p50 / p99 | apiwarden p50 / p99 |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, proto := range []string{"grpc", "http"} {
		for _, c := range cfg.concurrency {
			var floors, aws []load.Result
			for range cfg.rounds {
				var f, a load.Result
				if proto == "grpc" {
					if f, err = loadGRPC(floorGRPC, apiKeys, cfg.requests, c, 0); err != nil {
						return err
					}
					if a, err = loadGRPC(awGRPC, apiKeys, cfg.requests, c, 0); err != nil {
						return err
					}
				} else {
					if f, err = loadHTTP(floorHTTP, apiKeys, cfg.requests, c, 0); err != nil {
						return err
					}
					if a, err = loadHTTP(awHTTP, apiKeys, cfg.requests, c, 0); err != nil {
						return err
					}
				}
				floors, aws = append(floors, f), append(aws, a)
			}
			f, a := load.Median(floors), load.Median(aws)
			fmt.Printf("| %s | %d | %.0f | %.0f | %.2f | %s / %s | %s / %s |\n", proto, c, f.Rate(), a.Rate(), a.Rate()/f.Rate(), load.Micros(f.P50), load.Micros(f.P99), load.Micros(a.P50), load.Micros(a.P99))
		}
	}
	if cfg.rate <= 0 {
		return nil
	}
	n := min(cfg.requests, cfg.rate*5)
	fmt.Printf("\nLatency at a fixed offered load of %d checks/s from 8 clients (paced, %d requests):\n\n", cfg.rate, n)
	fmt.Println("| front end | floor p50 / p99 | apiwarden p50 / p99 |")
	fmt.Println("|---|---|---|")
	for _, proto := range []string{"grpc", "http"} {
		var f, a load.Result
		if proto == "grpc" {
			if f, err = loadGRPC(floorGRPC, apiKeys, n, 8, cfg.rate); err != nil {
				return err
			}
			if a, err = loadGRPC(awGRPC, apiKeys, n, 8, cfg.rate); err != nil {
				return err
			}
		} else {
			if f, err = loadHTTP(floorHTTP, apiKeys, n, 8, cfg.rate); err != nil {
				return err
			}
			if a, err = loadHTTP(awHTTP, apiKeys, n, 8, cfg.rate); err != nil {
				return err
			}
		}
		fmt.Printf("| %s | %s / %s | %s / %s |\n", proto, load.Micros(f.P50), load.Micros(f.P99), load.Micros(a.P50), load.Micros(a.P99))
	}
	return nil
}

// seed builds a store as the manager's informers would.
func seed(n int) (*authz.Store, []string, error) {
	pepper := make([]byte, keys.MinPepperLen)
	for i := range pepper {
		pepper[i] = byte(i)
	}
	store := authz.NewStore("apiwarden-system", authz.NewMetrics(nil))
	if err := store.SetPepper(pepper); err != nil {
		return nil, nil, err
	}
	store.UpsertPolicy(&apiwardenv1alpha1.APIPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "orders"},
		Spec: apiwardenv1alpha1.APIPolicySpec{
			Authentication: &apiwardenv1alpha1.Authentication{APIKey: &apiwardenv1alpha1.APIKeyAuthentication{KeySetRefs: []apiwardenv1alpha1.LocalObjectReference{{Name: "clients"}}, Header: "X-API-Key"}},
			Authorization: &apiwardenv1alpha1.Authorization{Rules: []apiwardenv1alpha1.AuthorizationRule{
				{Name: "deny-admin", Action: apiwardenv1alpha1.AuthorizationActionDeny, Paths: []apiwardenv1alpha1.PathMatch{{Value: "/admin"}}},
				{Name: "writers", Action: apiwardenv1alpha1.AuthorizationActionAllow, Roles: []string{"writer"}},
				{Name: "readers", Action: apiwardenv1alpha1.AuthorizationActionAllow, Roles: []string{"reader"}, Methods: []apiwardenv1alpha1.HTTPMethod{"GET"}},
			}},
		},
	})
	var entries []keystore.HashEntry
	var plain []string
	for i := range n {
		k, err := keys.Generate("shop")
		if err != nil {
			return nil, nil, err
		}
		h := keys.HashKey(pepper, k)
		entries = append(entries, keystore.HashEntry{ID: h.ID(), Hash: h.String(), Consumer: fmt.Sprintf("c%d", i), Roles: []string{"reader"}})
		plain = append(plain, k)
	}
	raw, err := json.Marshal(entries)
	if err != nil {
		return nil, nil, err
	}
	if err := store.UpsertHashStore(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apiwarden-system", Name: keystore.HashStoreName("bench", "clients"),
			Labels: keystore.HashStoreLabels("bench", "clients")},
		Data: map[string][]byte{keystore.HashesField: raw},
	}); err != nil {
		return nil, nil, err
	}
	store.MarkSynced()
	return store, plain, nil
}

// floorServer allows every check without reading it.
type floorServer struct {
	authv3.UnimplementedAuthorizationServer
}

var floorOK = &authv3.CheckResponse{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
	Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-apiwarden-consumer", Value: "floor"}}},
}}}

func (floorServer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return floorOK, nil
}

func serveGRPC(srv authv3.AuthorizationServer) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, srv)
	go func() { _ = gs.Serve(ln) }()
	return ln.Addr().String(), gs.Stop, nil
}

func serveHTTP(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String() + authz.ForwardAuthPrefix + "bench/orders", func() { _ = srv.Close() }, nil
}

func loadGRPC(addr string, apiKeys []string, n, c, rate int) (load.Result, error) {
	conns := make([]*grpc.ClientConn, min(c, 4))
	clients := make([]authv3.AuthorizationClient, len(conns))
	for i := range conns {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return load.Result{}, err
		}
		defer cc.Close()
		conns[i], clients[i] = cc, authv3.NewAuthorizationClient(cc)
	}
	reqs := make([]*authv3.CheckRequest, len(apiKeys))
	for i, k := range apiKeys {
		reqs[i] = checkRequest(k)
	}
	return load.Run(load.Options{Requests: n, Clients: c, Rate: rate}, func(w, i int) error {
		// Bounded like the HTTP client's requests: a stuck server fails
		// the run instead of hanging it. Every mode pays the same timer.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := clients[w%len(clients)].Check(ctx, reqs[i%len(reqs)])
		if err != nil {
			return err
		}
		if resp.GetOkResponse() == nil {
			return fmt.Errorf("check refused: %s", resp.GetDeniedResponse().GetBody())
		}
		return nil
	})
}

func loadGRPCTo(addr string, apiKeys []string, n, c int) (load.Result, error) {
	return loadGRPC(addr, apiKeys, n, c, 0)
}

func loadHTTP(url string, apiKeys []string, n, c, rate int) (load.Result, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: c, MaxConnsPerHost: c, DisableCompression: true}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return load.Run(load.Options{Requests: n, Clients: c, Rate: rate}, func(_, i int) error {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Header = http.Header{
			"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/orders/42?expand=items"}, "X-Forwarded-For": {"127.0.0.1"},
			"X-Api-Key": {apiKeys[i%len(apiKeys)]}, "User-Agent": {"bench/1.0"}, "Accept": {"application/json"},
		}
		resp, err := cl.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New("check refused: " + resp.Status)
		}
		return nil
	})
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
