package gatewayapi_test

import (
	"testing"

	"github.com/apiwarden/apiwarden/internal/render/gatewayapi"
	"github.com/apiwarden/apiwarden/internal/render/rendertest"
)

func TestGolden(t *testing.T) { rendertest.Golden(t, gatewayapi.Renderer{}) }
