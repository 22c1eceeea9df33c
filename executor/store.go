package executor

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kvgitops/kvgitops/fault"
)

// Store keeps one document durable in a ConfigMap the agent owns, in its
// own namespace: the agent's memory (docs/security.md, "The agent's
// memory"). Every write carries the resourceVersion last read or written:
// a second writer (a stale leader) makes it fail instead of being
// overwritten. A Store is used by one goroutine at a time.
type Store struct {
	e         *Executor
	namespace string
	name      string
	key       string
	component string
	rv        string // "" until read; "-" when the ConfigMap does not exist
}

// Store returns the store of key in the ConfigMap namespace/name; component
// labels the ConfigMap (app.kubernetes.io/component).
func (e *Executor) Store(namespace, name, key, component string) *Store {
	return &Store{e: e, namespace: namespace, name: name, key: key, component: component}
}

// Name is the ConfigMap's namespace/name, for messages.
func (s *Store) Name() string { return s.namespace + "/" + s.name }

// Load reads the document; nil when there is none yet.
func (s *Store) Load(ctx context.Context) ([]byte, error) {
	ctx, cancel := s.e.call(ctx)
	defer cancel()
	cm, err := s.e.kube.CoreV1().ConfigMaps(s.namespace).Get(ctx, s.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		s.rv = "-"
		return nil, nil
	}
	if err != nil {
		return nil, apiError(err, "read the ConfigMap %s", s.Name())
	}
	s.rv = cm.ResourceVersion
	data, ok := cm.Data[s.key]
	if !ok {
		return nil, nil
	}
	return []byte(data), nil
}

// Save writes the document with the last resourceVersion as precondition.
func (s *Store) Save(ctx context.Context, data []byte) error {
	if s.rv == "" {
		if _, err := s.Load(ctx); err != nil {
			return err
		}
	}
	ctx, cancel := s.e.call(ctx)
	defer cancel()
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.namespace,
			Labels: map[string]string{"app.kubernetes.io/name": "kvgitops", "app.kubernetes.io/component": s.component}},
		Data: map[string]string{s.key: string(data)},
	}
	var err error
	var out *corev1.ConfigMap
	if s.rv == "-" {
		out, err = s.e.kube.CoreV1().ConfigMaps(s.namespace).Create(ctx, cm, metav1.CreateOptions{FieldManager: s.e.cfg.FieldManager})
	} else {
		cm.ResourceVersion = s.rv
		out, err = s.e.kube.CoreV1().ConfigMaps(s.namespace).Update(ctx, cm, metav1.UpdateOptions{FieldManager: s.e.cfg.FieldManager})
	}
	if err != nil {
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			s.rv = "" // re-read before the next attempt
			return fault.Transient(ReasonAPIUnavailable, err, "the ConfigMap %s was changed by another writer", s.Name())
		}
		return apiError(err, "write the ConfigMap %s", s.Name())
	}
	s.rv = out.ResourceVersion
	return nil
}
