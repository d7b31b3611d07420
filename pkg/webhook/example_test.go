package webhook_test

import (
	"fmt"
	"io"
	"net/http"

	"github.com/parley-chat/parley/pkg/webhook"
)

// A receiver verifies each webhook before it trusts it, and dedupes by
// its webhook-id: an event may come more than once.
func ExampleVerify() {
	secret, err := webhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		panic(err)
	}
	http.HandleFunc("POST /hooks/parley", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read error", http.StatusBadRequest)
			return
		}
		if err := webhook.Verify(secret, r.Header, body, webhook.DefaultTolerance); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		// ... handle the event once per r.Header.Get("webhook-id") ...
		w.WriteHeader(http.StatusNoContent)
	})
	fmt.Println("listening")
	// Output: listening
}
