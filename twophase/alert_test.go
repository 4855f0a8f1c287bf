package twophase

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// AlertAfter returns the threshold that WithAlertAfter set, or the
// default.
func TestAlertAfter(t *testing.T) {
	c := &Coordinator{cfg: defaultConfig()}
	assert.Equal(t, 5*time.Minute, c.AlertAfter(), "the default")
	WithAlertAfter(90 * time.Second).apply(&c.cfg)
	assert.Equal(t, 90*time.Second, c.AlertAfter())
}
