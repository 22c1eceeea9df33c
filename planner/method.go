package planner

// Method is how hops are carried out. Everything the planner needs to know
// about a method is here: adding one means adding it below and teaching
// each predicate about it (the exhaustive lint finds every switch), plus
// the executor's table of how each method runs a hop.
type Method string

// Methods.
const (
	// MethodAuto (desired file only): Operator while the CR is locked to
	// the operator, OperatorThenImageTag while it pins a tag.
	MethodAuto Method = "Auto"
	// MethodOperator: apply the hop's kubevirt-operator.yaml with the CR
	// locked to the operator (a pinned tag is removed).
	MethodOperator Method = "Operator"
	// MethodImageTag: patch spec.imageTag only; the operator stays (unless
	// it lacks RBAC the release needs: then it is updated first).
	MethodImageTag Method = "ImageTag"
	// MethodOperatorThenImageTag (planned only): apply the hop's operator,
	// wait for its rollout, then move spec.imageTag.
	MethodOperatorThenImageTag Method = "OperatorThenImageTag"
)

// PlannedMethods are the methods a planned hop carries (the executor has a
// way to run each).
func PlannedMethods() []Method {
	return []Method{MethodOperator, MethodImageTag, MethodOperatorThenImageTag}
}

// desirableMethods are what spec.method accepts.
func desirableMethods() []Method { return []Method{MethodAuto, MethodOperator, MethodImageTag} }

// AppliesManifest reports whether a hop by m applies the target's
// kubevirt-operator.yaml (an ImageTag hop does only when the running
// operator lacks RBAC the release needs, which the executor checks).
func (m Method) AppliesManifest() bool {
	switch m {
	case MethodOperator, MethodOperatorThenImageTag:
		return true
	case MethodAuto, MethodImageTag:
	}
	return false
}

// PinsTag reports whether a hop by m ends with spec.imageTag pinned to the
// target.
func (m Method) PinsTag() bool {
	switch m {
	case MethodImageTag, MethodOperatorThenImageTag:
		return true
	case MethodAuto, MethodOperator:
	}
	return false
}

// TagOnly reports whether m moves spec.imageTag without the operator: it
// cannot work under an operator that ignores the tag (kubevirt#16050).
func (m Method) TagOnly() bool {
	switch m {
	case MethodImageTag:
		return true
	case MethodAuto, MethodOperator, MethodOperatorThenImageTag:
	}
	return false
}

// ForMode is the method a hop is planned with when the desired file asks
// for m and the CR is in mode.
func (m Method) ForMode(mode Mode) Method {
	switch m {
	case MethodAuto:
		if mode == ModeImageTag {
			return MethodOperatorThenImageTag
		}
		return MethodOperator
	case MethodOperator, MethodImageTag, MethodOperatorThenImageTag:
	}
	return m
}

// Unpinned is m for a hop whose operator ignores spec.imageTag: a method
// that would pin the tag after applying the operator applies the operator
// only and unpins, so the CR follows the operator from there on.
func (m Method) Unpinned() Method {
	switch m {
	case MethodOperatorThenImageTag:
		return MethodOperator
	case MethodAuto, MethodOperator, MethodImageTag:
	}
	return m
}

// Meets reports whether a hop by m meets a risk listed for method r: a
// method that ends by moving the tag meets the risks of ImageTag hops.
func (m Method) Meets(r Method) bool {
	return m == r || r == MethodImageTag && m.PinsTag()
}

// InstallMethod is how an install at the target runs when the desired file
// asks for m: pinned to the tag for ImageTag, locked to the operator else.
func (m Method) InstallMethod() Method {
	if m.TagOnly() {
		return MethodImageTag
	}
	return MethodOperator
}
