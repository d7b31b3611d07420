<?php
// Verifies Parley's webhooks, signed as the Standard Webhooks spec says:
// the headers webhook-id, webhook-timestamp (Unix seconds) and
// webhook-signature ("v1,<base64 HMAC-SHA256>", several separated by
// spaces while a secret is rotated), over "<id>.<timestamp>.<raw body>",
// keyed with the base64 part of the secret "whsec_...".

declare(strict_types=1);

final class WebhookVerifier
{
    private string $key;

    public function __construct(string $secret, private int $toleranceSeconds = 300)
    {
        $b64 = str_starts_with($secret, 'whsec_') ? substr($secret, 6) : $secret;
        $key = base64_decode($b64, true);
        if ($key === false || $key === '') {
            throw new InvalidArgumentException('the webhook secret is not whsec_<base64>');
        }
        $this->key = $key;
    }

    /**
     * Returns the event (the decoded body) when the signature is right and
     * the timestamp within the tolerance; throws otherwise. $headers maps
     * lower-case header names to values.
     */
    public function verify(array $headers, string $body, ?int $now = null): array
    {
        $id = $headers['webhook-id'] ?? '';
        $ts = $headers['webhook-timestamp'] ?? '';
        $sigs = $headers['webhook-signature'] ?? '';
        if ($id === '' || $ts === '' || $sigs === '') {
            throw new UnexpectedValueException('missing webhook headers');
        }
        if (!ctype_digit($ts) || abs(($now ?? time()) - (int) $ts) > $this->toleranceSeconds) {
            throw new UnexpectedValueException('webhook timestamp outside the tolerance');
        }
        $expected = base64_encode(hash_hmac('sha256', $id . '.' . $ts . '.' . $body, $this->key, true));
        foreach (explode(' ', $sigs) as $sig) {
            [$version, $value] = array_pad(explode(',', $sig, 2), 2, '');
            if ($version === 'v1' && hash_equals($expected, $value)) {
                return json_decode($body, true, 512, JSON_THROW_ON_ERROR);
            }
        }
        throw new UnexpectedValueException('no valid webhook signature');
    }
}
