package webhook

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Sender POSTs signed webhooks to one URL.
type Sender struct {
	URL    string
	Secret Secret
	// Client sends the requests. Default http.DefaultClient.
	Client *http.Client
	// Timeout bounds one POST, its answer included. Default 10s.
	Timeout time.Duration
}

// StatusError is a receiver's answer other than 2xx.
type StatusError struct {
	Status int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("webhook: receiver answered %d %s", e.Status, http.StatusText(e.Status))
}

// Send POSTs body as event id, signed at ts, and returns nil when the
// receiver answers 2xx. Any other answer is a *StatusError; the answer's
// body is read (a little of it) and dropped, never logged.
func (s *Sender) Send(ctx context.Context, id string, ts time.Time, body []byte) error {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderID, id)
	req.Header.Set(HeaderTimestamp, fmt.Sprint(ts.Unix()))
	req.Header.Set(HeaderSignature, Sign(s.Secret, id, ts, body))
	client := s.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection is reused
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &StatusError{Status: resp.StatusCode}
	}
	return nil
}
