package redis_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/parley-chat/parley/internal/redistest"
	"github.com/parley-chat/parley/pkg/broker"
)

// BenchmarkPublish: one Publish (one EVALSHA round trip) on a real Redis.
func BenchmarkPublish(b *testing.B) {
	srv := redistest.Start(b, redistest.Options{})
	br := newBroker(b, srv, nil, 1000)
	defer br.Close()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := br.Publish(ctx, broker.Publication{Room: "bench", ID: fmt.Sprint(i), From: "u", Device: "d", Body: "hello, world"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishParallel: many senders at once on one Broker.
func BenchmarkPublishParallel(b *testing.B) {
	srv := redistest.Start(b, redistest.Options{})
	br := newBroker(b, srv, nil, 1000)
	defer br.Close()
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(8)
	var n int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := atomicAdd(&n)
			if _, err := br.Publish(ctx, broker.Publication{Room: fmt.Sprintf("r%d", i%100), ID: fmt.Sprint(i), From: "u", Body: "hello, world"}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
