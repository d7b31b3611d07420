package terminal

import (
	"testing"

	"github.com/parley-chat/parley/internal/proctest"
)

func TestMain(m *testing.M) { proctest.Main(m) }
