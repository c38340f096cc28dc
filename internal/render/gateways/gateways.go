// Package gateways lists the renderers by the name --gateway gives them, for
// the manager and the CLI.
package gateways

import (
	"fmt"
	"strings"

	"github.com/apiwarden/apiwarden/internal/render"
	"github.com/apiwarden/apiwarden/internal/render/envoygateway"
	"github.com/apiwarden/apiwarden/internal/render/gatewayapi"
	"github.com/apiwarden/apiwarden/internal/render/traefik"
)

// Default is the renderer used when --gateway is not given.
const Default = envoygateway.Name

var all = []render.Renderer{envoygateway.Renderer{}, gatewayapi.Renderer{}, traefik.Renderer{}}

// Names lists the valid --gateway values.
func Names() []string {
	out := make([]string, len(all))
	for i, r := range all {
		out[i] = r.Name()
	}
	return out
}

// Get returns the renderer called name.
func Get(name string) (render.Renderer, error) {
	for _, r := range all {
		if r.Name() == name {
			return r, nil
		}
	}
	return nil, fmt.Errorf("unknown gateway %q; valid gateways are %s", name, strings.Join(Names(), ", "))
}
