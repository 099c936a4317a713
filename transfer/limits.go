package transfer

// MaxChunk is the largest chunk payload Write accepts.
func (m *Manager) MaxChunk() int { return m.maxChunk }

// MaxFileSize is the largest file Open accepts.
func (m *Manager) MaxFileSize() int64 { return m.maxFileSize }
