package redis

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	goredis "github.com/redis/go-redis/v9"
)

var quietOnce sync.Once

// goredisLogger sends go-redis's own log lines (dial retries and the like)
// to slog at debug level: the broker reports connection state itself.
type goredisLogger struct{}

func (goredisLogger) Printf(ctx context.Context, format string, v ...any) {
	slog.Default().DebugContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
}

func quietGoRedis() { quietOnce.Do(func() { goredis.SetLogger(goredisLogger{}) }) }
