package proctest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var build struct {
	once sync.Once
	dir  string
	bin  string
	err  string
}

// Binary builds ./cmd/parley (without the race detector, as users run it)
// the first time it is called and returns the path of the binary. Call
// Cleanup from TestMain to remove it.
func Binary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		dir, err := os.MkdirTemp("", "parley-bin-")
		if err != nil {
			build.err = err.Error()
			return
		}
		build.dir = dir
		bin := filepath.Join(dir, "parley")
		root, err := moduleRoot()
		if err != nil {
			build.err = err.Error()
			return
		}
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/parley")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = err.Error() + "\n" + string(out)
			return
		}
		build.bin = bin
	})
	if build.bin == "" {
		t.Fatalf("proctest: go build ./cmd/parley: %s", build.err)
	}
	return build.bin
}

// Cleanup removes the binary that Binary built.
func Cleanup() {
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
}

// Main is the TestMain of a package whose tests use Binary: it runs the
// tests, removes the binary and exits with their status.
//
//	func TestMain(m *testing.M) { proctest.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}
