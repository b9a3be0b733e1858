package fault

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestOf(t *testing.T) {
	base := errors.New("CKR_KEY_TYPE_INCONSISTENT")
	tests := []struct {
		name string
		err  error
		want Kind
	}{
		{"nil", nil, 0},
		{"plain error", base, Internal},
		{"kind itself", NotFound, NotFound},
		{"wrapped once", fmt.Errorf("sign: %w: %w", BadParameter, base), BadParameter},
		{"wrapped twice", fmt.Errorf("key %q: %w", "k1", fmt.Errorf("sign: %w", Unsupported)), Unsupported},
		{"joined", errors.Join(base, Forbidden), Forbidden},
		{"context error is not a kind", fmt.Errorf("wait: %w", context.Canceled), Internal},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Of(tc.err); got != tc.want {
				t.Errorf("Of(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
	err := fmt.Errorf("sign: %w: %w", BadParameter, base)
	if !errors.Is(err, BadParameter) || !errors.Is(err, base) || errors.Is(err, NotFound) {
		t.Error("errors.Is does not see the kind and the cause")
	}
}

func TestNames(t *testing.T) {
	for k := NotFound; k <= Internal; k++ {
		if k.Error() == "invalid fault kind" {
			t.Errorf("kind %d has no name", k)
		}
	}
	if Kind(0).Error() != "invalid fault kind" || Kind(200).Error() != "invalid fault kind" {
		t.Error("invalid kinds must say so")
	}
}
