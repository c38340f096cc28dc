package traefik_test

import (
	"testing"

	"github.com/apiwarden/apiwarden/internal/render/rendertest"
	"github.com/apiwarden/apiwarden/internal/render/traefik"
)

func TestGolden(t *testing.T) { rendertest.Golden(t, traefik.Renderer{}) }
