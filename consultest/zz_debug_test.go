package consultest

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestZZRetries(t *testing.T) {
	for i := 0; i < 60; i++ {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			var opts []Option
			if i%3 != 0 {
				opts = append(opts, WithTLS())
				if i%3 == 2 {
					opts = append(opts, WithACL())
				}
			}
			s := NewServer(t, opts...)
			b, _ := os.ReadFile(s.log)
			if strings.Contains(string(b), "consultest: start 2") {
				lines := []string{}
				for _, l := range strings.Split(string(b), "\n") {
					if !strings.Contains(l, "[DEBUG]") && !strings.Contains(l, "[INFO]") {
						lines = append(lines, l)
					}
				}
				t.Logf("tls=%v retried:\n%s", i%2 == 0, strings.Join(lines, "\n"))
			}
		})
	}
}
