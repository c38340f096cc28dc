// Package version holds the build's version, set at link time with
// -ldflags "-X github.com/apiwarden/apiwarden/internal/version.Version=v0.1.0".
package version

// Version is the apiwarden release this binary was built from, or "dev".
var Version = "dev"
