package executor

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
)

// checkFunc judges the current state of a watched object (nil: absent). It
// may ask to be called again after recheck even without a change.
type checkFunc func(obj *unstructured.Unstructured) (done bool, recheck time.Duration, err error)

// watchObject lists and watches one named object and calls check on every
// change until it is done, fails, or ctx ends. A watch that ends (timeout,
// 410 Gone after a long partition, apiserver restart) is re-established from
// a fresh list, so no decision rests on a stale cache.
func (e *Executor) watchObject(ctx context.Context, r dynamic.ResourceInterface, name string, check checkFunc) error {
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	backoff := 100 * time.Millisecond
	for {
		ctx1, cancel := e.call(ctx)
		list, err := r.List(ctx1, metav1.ListOptions{FieldSelector: sel})
		cancel()
		var cur *unstructured.Unstructured
		rv := ""
		switch {
		case err == nil:
			if len(list.Items) > 0 {
				cur = &list.Items[0]
			}
			rv = list.GetResourceVersion()
		case apierrors.IsNotFound(err): // the resource itself is gone (CRD deleted)
		default:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err := sleep(ctx, backoff); err != nil {
				return err
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		done, recheck, err := check(cur)
		if done || err != nil {
			return err
		}
		if rv == "" {
			if err := sleep(ctx, backoff); err != nil {
				return err
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		w, err := r.Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue
		}
		done, err = e.follow(ctx, w, cur, check, recheck)
		w.Stop()
		if done || err != nil {
			return err
		}
	}
}

// follow consumes one watch; it returns (false, nil) when the watch ends and
// the caller should re-list.
func (e *Executor) follow(ctx context.Context, w watch.Interface, cur *unstructured.Unstructured, check checkFunc, recheck time.Duration) (bool, error) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	arm := func(d time.Duration) {
		timer.Stop()
		if d > 0 {
			timer.Reset(d)
		}
	}
	arm(recheck)
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-timer.C:
		case ev, ok := <-w.ResultChan():
			if !ok || ev.Type == watch.Error {
				return false, nil
			}
			switch ev.Type {
			case watch.Bookmark:
				continue
			case watch.Deleted:
				cur = nil
			default:
				if u, ok := ev.Object.(*unstructured.Unstructured); ok {
					cur = u
				}
			}
		}
		heartbeat(ctx)
		done, again, err := check(cur)
		if done || err != nil {
			return done, err
		}
		arm(again)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		heartbeat(ctx)
		return nil
	}
}
