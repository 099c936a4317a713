package protocol

import "maps"

// sentences says what each error code means to a person using an app, in
// one sentence without jargon: what happened and, where there is one, what
// to do. The page (web/static/words.js) holds the same table, and a test
// keeps the two equal. Numbers the protocol gives elsewhere (a size limit
// from the welcome frame, a retry delay) are added by the app that knows
// them, so the sentences here stand without them.
var sentences = map[string]string{
	CodeBadFrame:       "The app sent something the server could not read. Reload the page and try again.",
	CodeUnknownType:    "The server does not know this request. The app may not match the server's version: reload it.",
	CodeFrameTooLarge:  "This message is too long for the server. Send it in shorter parts.",
	CodeInvalidRoom:    "Room names use letters, digits and . _ - : @ only, up to 64 characters.",
	CodeInvalidEvent:   "The app sent a kind of message the server does not accept.",
	CodeInvalidTarget:  "The app did not say who the message is for.",
	CodeNotMember:      "You are not in this room any more. Join it again to go on.",
	CodeUnknownRoom:    "This room does not exist.",
	CodeUnknownTarget:  "That person is not connected right now.",
	CodeTooManyRooms:   "You are in too many rooms at once. Leave one to join another.",
	CodeRateLimited:    "You are sending too fast. Wait a moment and try again.",
	CodeOverQuota:      "You have sent more than the server keeps for one person. Try again later.",
	CodeInternal:       "Something went wrong on the server. Try again; if it keeps happening, tell whoever runs it.",
	CodeNotImplemented: "The server cannot do this yet.",
	CodeBadChunk:       "Part of the file was damaged on the way. It is sent again.",

	CodeBadOffset:          "The upload lost its place. It goes on from where the server stands.",
	CodeTooLarge:           "This file is larger than the server accepts.",
	CodeBeyondSize:         "The file grew while it was being sent. Pick it again.",
	CodeUnknownUpload:      "The server no longer has this upload. Pick the file again to start over.",
	CodeForbidden:          "You are not allowed to do that here.",
	CodeBadName:            "The server does not accept this file's name. Rename the file and try again.",
	CodeBadRequest:         "The server did not understand this request. Reload the page and try again.",
	CodeTypeRefused:        "Programs and scripts cannot be shared here.",
	CodeTypeMismatch:       "This file's contents don't match its name.",
	CodeChecksumMismatch:   "The file changed while it was being sent. Pick it again.",
	CodeTooManyUploads:     "Too many uploads are running at once. Wait for some to finish and try again.",
	CodeWindowExceeded:     "The upload is sending faster than the server stores. It slows down by itself.",
	CodeStorageUnavailable: "File storage is not reachable. Uploads are paused and will resume.",
	CodeCanceled:           "The upload was canceled.",
	CodeNotFound:           "This file is no longer available.",
	CodeExpired:            "This upload was left unfinished for too long. Pick the file again to start over.",
	CodeStorageFull:        "The server has no room left for this file. Try again once space is freed.",
	CodeBusy:               "The server is busy. The upload starts in a moment.",
}

// unknownSentence is what Sentence says for a code it does not know (one
// of a newer server).
const unknownSentence = "Something went wrong. Try again."

// Sentence returns a plain sentence that tells a person what an error code
// means, for apps to show instead of the code or the server's technical
// message. Unknown codes get a generic sentence.
func Sentence(code string) string {
	if s, ok := sentences[code]; ok {
		return s
	}
	return unknownSentence
}

// Sentences returns the whole table, code → sentence, for clients that
// keep their own copy (the page's words.js is checked against it).
func Sentences() map[string]string { return maps.Clone(sentences) }
