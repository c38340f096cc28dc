package envoygateway_test

import (
	"testing"

	"github.com/apiwarden/apiwarden/internal/render/envoygateway"
	"github.com/apiwarden/apiwarden/internal/render/rendertest"
)

func TestGolden(t *testing.T) { rendertest.Golden(t, envoygateway.Renderer{}) }
