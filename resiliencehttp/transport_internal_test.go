package resiliencehttp

import (
	"testing"
	"unsafe"
)

// A call is the one allocation of RoundTrip's own on the success path; it
// stays within the allocator's 512-byte size class, the next being 576.
func TestCallFitsItsSizeClass(t *testing.T) {
	if size := unsafe.Sizeof(call{}); size > 512 {
		t.Errorf("call is %d bytes, want at most 512", size)
	}
}
