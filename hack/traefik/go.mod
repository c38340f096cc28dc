// Wrapper module that pins Traefik, the Go gateway the end-to-end tests
// (test/e2e) send real traffic through. Built by hack/traefik.sh; not part of
// apiwarden. The replace and exclude directives are Traefik's own (its
// go.mod), which a dependent module must repeat.
module github.com/apiwarden/apiwarden/hack/traefik

go 1.26.7

require github.com/traefik/traefik/v3 v3.6.12

// Containous forks
replace (
	github.com/abbot/go-http-auth => github.com/containous/go-http-auth v0.4.1-0.20200324110947-a37a7636d23e
	github.com/gorilla/mux => github.com/containous/mux v0.0.0-20250523120546-41b6ec3aed59
	github.com/mailgun/minheap => github.com/containous/minheap v0.0.0-20190809180810-6e71eb837595
)

exclude github.com/tencentcloud/tencentcloud-sdk-go v3.0.83+incompatible
