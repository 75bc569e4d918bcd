package layers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

// undo is one release step: what it undoes and how.
type undo struct {
	what string
	fn   func() error
	// failureOnly undoes a step only when the call fails (removing a scratch
	// disk it made); commit drops it.
	failureOnly bool
}

// stack records the undo of every step a mount call took, and is the
// ResourceCloser it returns.
type stack struct {
	mu    sync.Mutex // guards undos and n: steps run concurrently, Release from anywhere
	undos []undo
	log   *slog.Logger

	// For tests: see options.failAt and options.steps.
	failAt int
	n      int
	steps  *[]string
}

var _ ResourceCloser = (*stack)(nil)

func newStack(o *options) *stack {
	return &stack{log: o.log, failAt: o.failAt, steps: o.steps}
}

// errInjected is the failure tests inject into a step.
var errInjected = errors.New("layers: injected failure")

// step runs the acquiring step fn, named what, and on success records its undo (if
// not nil). A failing step must leave nothing acquired itself.
//
// Steps may run from several goroutines; the undos of one goroutine's steps keep
// their order.
func (s *stack) step(what string, fn func() (func() error, error)) error {
	s.mu.Lock()
	s.n++
	if s.steps != nil {
		*s.steps = append(*s.steps, what)
	}
	inject := s.n == s.failAt
	s.mu.Unlock()
	if inject {
		return errInjected
	}
	u, err := fn()
	if err != nil {
		return err
	}
	if u != nil {
		s.mu.Lock()
		s.undos = append(s.undos, undo{what: what, fn: u})
		s.mu.Unlock()
	}
	return nil
}

// failureOnly marks the last recorded undo as one for a failed call only.
func (s *stack) failureOnly() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.undos); n > 0 {
		s.undos[n-1].failureOnly = true
	}
}

// commit ends a successful call: the undos kept are those Release runs.
func (s *stack) commit() {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.undos[:0]
	for _, u := range s.undos {
		if !u.failureOnly {
			kept = append(kept, u)
		}
	}
	s.undos = kept
}

// Release undoes the recorded steps, last first. It stops at the first failure,
// keeping that step and those below it for another call.
func (s *stack) Release(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.undos) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		u := s.undos[len(s.undos)-1]
		if err := u.fn(); err != nil {
			return fmt.Errorf("layers: release: %s: %w", u.what, err)
		}
		s.log.Debug("released", "step", u.what)
		s.undos = s.undos[:len(s.undos)-1]
	}
	return nil
}

// unwind releases after a failed call and returns err, joined with the release
// failure if there is one.
func (s *stack) unwind(err error) error {
	if rerr := s.Release(context.Background()); rerr != nil {
		s.log.Warn("releasing after a failure", "error", rerr)
		return errors.Join(err, rerr)
	}
	return err
}
