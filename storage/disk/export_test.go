package disk

// Steps of a completion, for tests that stop one there.
const (
	StepRenamed  = stepRenamed
	StepAppended = stepAppended
	StepRecorded = stepRecorded
	StepJoined   = stepJoined
	StepPlaced   = stepPlaced
)

// SetTestHook makes hook run between the steps of s's completions; an error
// it returns stops Complete there, as a crash would.
func SetTestHook(s *Store, hook func(step string, part int) error) { s.testHook = hook }
