package auth_test

import (
	"context"
	"fmt"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
)

func Example() {
	secret := []byte("a long random secret shared with the app backend")

	// The application's backend signs a token for its user...
	s, _ := auth.NewHMACSigner(secret)
	token, _ := s.Sign(auth.Claims{User: "alice", Name: "Alice", Rooms: []string{"general", "team-*"}, Expires: time.Now().Add(time.Hour)})

	// ...and the gateway verifies it.
	v, _ := auth.New(auth.Config{HMACSecret: secret})
	c, err := v.Verify(context.Background(), token)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.User, c.Name, c.Allows("team-red"), c.Allows("random"))
	// Output: alice Alice true false
}
