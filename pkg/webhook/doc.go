// Package webhook signs, sends and verifies webhooks the Standard
// Webhooks way: a POST of a JSON body with three headers,
//
//	webhook-id         the event's stable id: the same on every attempt, so a receiver dedupes by it
//	webhook-timestamp  when this attempt was sent, in Unix seconds
//	webhook-signature  "v1,<base64 of HMAC-SHA256(secret, id + "." + timestamp + "." + body)>",
//	                   possibly several, separated by spaces (a secret being rotated)
//
// The secret is written "whsec_<base64 of the key>". A receiver checks
// the signature and that the timestamp is recent (Verify), and answers
// 2xx once it has the event; anything else is retried by the sender,
// with exponential backoff and full jitter (Backoff).
package webhook
