package transfer

import (
	"bytes"
	"mime"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/h2non/filetype"
	"golang.org/x/text/unicode/norm"
)

// sniffLen is how many leading bytes decide a file's type; it covers every
// signature the sniffer knows but the ISO 9660 one.
const sniffLen = 262

const octetStream = "application/octet-stream"

// Policy decides which content types are accepted. Its zero value refuses
// executables and scripts and accepts everything else.
type Policy struct {
	// AllowExecutables accepts executables (ELF, PE, Mach-O, DEX) and scripts
	// (a "#!" first line, or a declared type or extension of a shell, batch or
	// installer file), which are refused by default.
	AllowExecutables bool
	// Refuse lists more content types to refuse, matched against the stored
	// type and the declared one. "video/*" matches a whole top-level type.
	Refuse []string
	// Allow, when not empty, is the only content types stored; anything
	// else is refused. Same patterns as Refuse.
	Allow []string
}

// executableTypes are refused unless Policy.AllowExecutables (canonical
// forms, see canonicalType).
var executableTypes = map[string]bool{
	"application/x-executable":                      true,
	"application/vnd.microsoft.portable-executable": true,
	"application/x-mach-binary":                     true,
	"application/vnd.android.dex":                   true,
	"application/vnd.android.dey":                   true,
	"application/x-msi":                             true,
	"application/x-sh":                              true,
	"application/x-csh":                             true,
	"application/x-bat":                             true,
	"application/x-powershell":                      true,
	"application/x-vbscript":                        true,
	"application/hta":                               true,
	"application/x-ms-shortcut":                     true,
	"application/x-apple-diskimage":                 true,
}

// executableExts are refused by name unless Policy.AllowExecutables.
var executableExts = map[string]bool{
	"exe": true, "dll": true, "com": true, "scr": true, "cpl": true, "sys": true,
	"msi": true, "msp": true, "bat": true, "cmd": true, "ps1": true, "psm1": true,
	"vbs": true, "vbe": true, "jse": true, "wsf": true, "wsh": true, "hta": true,
	"lnk": true, "sh": true, "bash": true, "zsh": true, "csh": true, "ksh": true,
	"command": true, "run": true, "appimage": true, "dmg": true, "elf": true,
	"js": true, "jar": true, "reg": true, "pif": true, "msc": true, "inf": true,
	"gadget": true, "application": true, "appref-ms": true, "msix": true,
	"appx": true, "vb": true, "ws": true, "wsc": true, "scf": true, "url": true,
	"desktop": true, "pkg": true, "app": true, "ps1xml": true, "psd1": true,
}

// runnableExt is the extension by which a system would run a file named
// name, read the way Windows and browsers read it: compatibility forms
// folded (a fullwidth "ｅｘｅ" is "exe"), an NTFS stream suffix (":$DATA")
// dropped, and trailing dots and spaces dropped, as Windows does when it
// creates the file ("x.bat." and "x.exe " are x.bat and x.exe).
func runnableExt(name string) string {
	n := norm.NFKC.String(name)
	if i := strings.IndexByte(n, ':'); i >= 0 {
		n = n[:i]
	}
	return extension(strings.TrimRight(n, ". \t"))
}

// aliases maps the names clients and browsers use to the one the sniffer
// returns, so that equal types compare equal.
var aliases = map[string]string{
	"image/jpg":                       "image/jpeg",
	"image/pjpeg":                     "image/jpeg",
	"image/x-png":                     "image/png",
	"image/x-icon":                    "image/vnd.microsoft.icon",
	"image/x-ms-bmp":                  "image/bmp",
	"image/x-bmp":                     "image/bmp",
	"image/heic":                      "image/heif",
	"audio/mp3":                       "audio/mpeg",
	"audio/x-mp3":                     "audio/mpeg",
	"audio/mpeg3":                     "audio/mpeg",
	"audio/x-mpeg":                    "audio/mpeg",
	"audio/wav":                       "audio/x-wav",
	"audio/wave":                      "audio/x-wav",
	"audio/vnd.wave":                  "audio/x-wav",
	"audio/flac":                      "audio/x-flac",
	"audio/x-m4a":                     "audio/m4a",
	"audio/aiff":                      "audio/x-aiff",
	"audio/mid":                       "audio/midi",
	"audio/x-midi":                    "audio/midi",
	"video/avi":                       "video/x-msvideo",
	"video/msvideo":                   "video/x-msvideo",
	"application/x-zip-compressed":    "application/zip",
	"application/x-zip":               "application/zip",
	"application/x-gzip":              "application/gzip",
	"application/x-rar-compressed":    "application/vnd.rar",
	"application/x-rar":               "application/vnd.rar",
	"application/x-pdf":               "application/pdf",
	"application/bzip2":               "application/x-bzip2",
	"application/x-sqlite3":           "application/vnd.sqlite3",
	"font/woff":                       "application/font-woff",
	"font/woff2":                      "application/font-woff",
	"font/ttf":                        "application/font-sfnt",
	"font/otf":                        "application/font-sfnt",
	"application/x-font-ttf":          "application/font-sfnt",
	"application/x-msdownload":        "application/vnd.microsoft.portable-executable",
	"application/x-msdos-program":     "application/vnd.microsoft.portable-executable",
	"application/x-dosexec":           "application/vnd.microsoft.portable-executable",
	"application/x-ms-dos-executable": "application/vnd.microsoft.portable-executable",
	"application/x-winexe":            "application/vnd.microsoft.portable-executable",
	"application/exe":                 "application/vnd.microsoft.portable-executable",
	"application/x-exe":               "application/vnd.microsoft.portable-executable",
	"application/x-elf":               "application/x-executable",
	"application/x-sharedlib":         "application/x-executable",
	"application/x-pie-executable":    "application/x-executable",
	"application/x-mach-o-executable": "application/x-mach-binary",
	"application/x-ms-installer":      "application/x-msi",
	"application/x-windows-installer": "application/x-msi",
	"application/x-shellscript":       "application/x-sh",
	"text/x-shellscript":              "application/x-sh",
	"text/x-sh":                       "application/x-sh",
	"application/x-bash":              "application/x-sh",
	"text/x-csh":                      "application/x-csh",
	"application/bat":                 "application/x-bat",
	"application/x-msdos-batch":       "application/x-bat",
	"text/x-msdos-batch":              "application/x-bat",
	"application/x-batch":             "application/x-bat",
	"text/x-powershell":               "application/x-powershell",
	"text/vbscript":                   "application/x-vbscript",
}

// families groups types that the sniffer cannot always tell apart from the
// first bytes: a declared type and a sniffed one from the same family do not
// contradict each other. The family's first entry, when generic is set, is a
// container whose members are more precise (a .docx sniffs as a zip).
var families = []struct {
	generic bool
	types   []string
}{
	{true, []string{"application/zip", "application/epub+zip",
		"application/vnd.openxmlformats-officedocument.wordprocessingml.document",
		"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
		"application/vnd.openxmlformats-officedocument.presentationml.presentation",
		"application/vnd.oasis.opendocument.text", "application/vnd.oasis.opendocument.spreadsheet",
		"application/vnd.oasis.opendocument.presentation", "application/java-archive",
		"application/vnd.android.package-archive"}},
	{true, []string{"application/x-ole-storage", "application/msword", "application/vnd.ms-excel",
		"application/vnd.ms-powerpoint", "application/vnd.ms-outlook", "application/x-msi"}},
	{true, []string{"image/tiff", "image/x-canon-cr2", "image/x-adobe-dng", "image/x-nikon-nef",
		"image/x-sony-arw"}},
	{false, []string{"video/mp4", "audio/mp4", "audio/m4a", "video/x-m4v", "video/quicktime",
		"video/3gpp", "video/3gpp2", "image/heif", "image/avif"}},
	{false, []string{"video/x-matroska", "video/webm", "audio/webm", "audio/x-matroska"}},
	{false, []string{"audio/ogg", "video/ogg", "application/ogg", "audio/opus"}},
}

// extTypes adds the extensions the sniffer's own table lacks.
var extTypes = map[string]string{
	"jpeg": "image/jpeg", "jpe": "image/jpeg", "jfif": "image/jpeg", "tiff": "image/tiff",
	"heic": "image/heif", "avif": "image/avif", "mpeg": "video/mpeg", "oga": "audio/ogg",
	"opus": "audio/opus", "ogv": "video/ogg", "midi": "audio/midi", "aif": "audio/x-aiff",
	"odt": "application/vnd.oasis.opendocument.text", "ods": "application/vnd.oasis.opendocument.spreadsheet",
	"odp": "application/vnd.oasis.opendocument.presentation", "jar": "application/java-archive",
	"apk": "application/vnd.android.package-archive", "dng": "image/x-adobe-dng", "nef": "image/x-nikon-nef",
	"arw": "image/x-sony-arw", "msg": "application/vnd.ms-outlook",
	"txt": "text/plain", "text": "text/plain", "md": "text/markdown", "csv": "text/csv", "log": "text/plain",
	"html": "text/html", "htm": "text/html", "css": "text/css",
}

// canonicalType lower-cases t, drops its parameters and resolves aliases.
func canonicalType(t string) string {
	if i := strings.IndexByte(t, ';'); i >= 0 {
		t = t[:i]
	}
	t = strings.ToLower(strings.TrimSpace(t))
	if a, ok := aliases[t]; ok {
		return a
	}
	return t
}

// declaredType validates a declared content type and returns its canonical
// form ("" when none was declared or it says nothing, like octet-stream).
func declaredType(t string) (string, error) {
	if strings.TrimSpace(t) == "" {
		return "", nil
	}
	if len(t) > 255 {
		return "", errorf(CodeBadRequest, "the content type is too long")
	}
	if _, _, err := mime.ParseMediaType(t); err != nil {
		return "", wrapf(err, CodeBadRequest, "the content type %q does not parse", t)
	}
	c := canonicalType(t)
	if c == octetStream || c == "binary/octet-stream" {
		return "", nil
	}
	return c, nil
}

// extension returns a name's lower-case extension without the dot.
func extension(name string) string {
	return strings.ToLower(strings.TrimPrefix(path.Ext(name), "."))
}

// extType returns the canonical type a name's extension claims, or "".
func extType(name string) string {
	ext := extension(name)
	if ext == "" {
		return ""
	}
	if t, ok := extTypes[ext]; ok {
		return t
	}
	if t := filetype.GetType(ext); t != filetype.Unknown {
		return canonicalType(t.MIME.Value)
	}
	return ""
}

func family(t string) (i int, generic bool, ok bool) {
	for i, f := range families {
		for j, m := range f.types {
			if m == t {
				return i, f.generic && j == 0, true
			}
		}
	}
	return 0, false, false
}

// compatible reports whether a claimed type (declared or from the name) and
// a sniffed one can describe the same bytes.
func compatible(claimed, sniffed string) bool {
	if claimed == sniffed {
		return true
	}
	fc, _, ok1 := family(claimed)
	fs, _, ok2 := family(sniffed)
	return ok1 && ok2 && fc == fs
}

// refine returns the more precise of a sniffed container type and a
// compatible claimed member of its family.
func refine(sniffed, claimed string) string {
	if claimed == "" || claimed == sniffed {
		return sniffed
	}
	if _, generic, _ := family(sniffed); generic && compatible(claimed, sniffed) {
		return claimed
	}
	return sniffed
}

// sniff returns the canonical type of the leading bytes, or "" when unknown.
// It knows a few executable signatures that are shorter than the sniffer's
// own minimum lengths (a 40-byte ELF is still an ELF).
func sniff(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("\x7fELF")):
		return "application/x-executable"
	case bytes.HasPrefix(b, []byte("MZ")):
		return "application/vnd.microsoft.portable-executable"
	case bytes.HasPrefix(b, []byte("dex\n")):
		return "application/vnd.android.dex"
	}
	kind, err := filetype.Match(b)
	if err != nil || kind == filetype.Unknown {
		return ""
	}
	t := canonicalType(kind.MIME.Value)
	if f, _, ok := family(t); ok && families[f].generic {
		// The OLE matchers overlap (a short .doc also matches .xls and
		// .ppt) and the sniffer picks one at random: keep the container.
		if families[f].types[0] == "application/x-ole-storage" {
			return "application/x-ole-storage"
		}
	}
	return t
}

// textLike reports whether b looks like text: valid UTF-8 without NULs. When
// b is only the start of a longer file, a character cut at its end is fine.
func textLike(b []byte, whole bool) bool {
	if bytes.IndexByte(b, 0) >= 0 {
		return false
	}
	if !whole {
		for i := 0; i < utf8.UTFMax-1 && len(b) > 0; i++ {
			if utf8.Valid(b) {
				return true
			}
			b = b[:len(b)-1]
		}
	}
	return utf8.Valid(b)
}

func matchPattern(pattern, t string) bool {
	pattern = strings.ToLower(strings.TrimSpace(pattern))
	if top, ok := strings.CutSuffix(pattern, "/*"); ok {
		return strings.HasPrefix(t, top+"/")
	}
	return canonicalType(pattern) == t
}

func matchAny(patterns []string, t string) bool {
	for _, p := range patterns {
		if matchPattern(p, t) {
			return true
		}
	}
	return false
}

// checkClaims is what can be refused before any byte arrives: a declared
// type or a name that says "executable", or a declared type the policy
// refuses. declared is canonical.
func (p Policy) checkClaims(declared, name string) error {
	if !p.AllowExecutables {
		if executableTypes[declared] {
			return errorf(CodeTypeRefused, "files of type %s are not accepted", declared)
		}
		if ext := runnableExt(name); executableExts[ext] {
			return errorf(CodeTypeRefused, "files named *.%s are not accepted", ext)
		}
	}
	if declared != "" && matchAny(p.Refuse, declared) {
		return errorf(CodeTypeRefused, "files of type %s are not accepted", declared)
	}
	return nil
}

// classify decides the stored content type of a file from its leading bytes
// (at most sniffLen; all of the file when whole), its declared canonical
// type and its name. Contradictions are reported before refusals so that a
// disguised executable is called what it is: a mismatch.
func (p Policy) classify(head []byte, declared, name string, whole bool) (string, error) {
	if err := p.checkClaims(declared, name); err != nil {
		return "", err
	}
	sniffed := sniff(head)
	byName := extType(name)
	if sniffed != "" {
		if declared != "" && !compatible(declared, sniffed) {
			return "", errorf(CodeTypeMismatch, "the file is %s, not %s as declared", sniffed, declared)
		}
		if byName != "" && !compatible(byName, sniffed) {
			return "", errorf(CodeTypeMismatch, "the file is %s, which its name %q contradicts", sniffed, name)
		}
	}
	if !p.AllowExecutables {
		if executableTypes[sniffed] {
			return "", errorf(CodeTypeRefused, "executables (%s) are not accepted", sniffed)
		}
		if bytes.HasPrefix(head, []byte("#!")) {
			return "", errorf(CodeTypeRefused, "scripts are not accepted")
		}
	}
	final := octetStream
	switch {
	case sniffed != "":
		final = refine(refine(sniffed, declared), byName)
	case textLike(head, whole):
		if strings.HasPrefix(declared, "text/") {
			final = declared
		} else if declared == "" && strings.HasPrefix(byName, "text/") {
			final = byName
		}
	}
	if len(p.Allow) > 0 && !matchAny(p.Allow, final) {
		return "", errorf(CodeTypeRefused, "files of type %s are not accepted", final)
	}
	if matchAny(p.Refuse, final) {
		return "", errorf(CodeTypeRefused, "files of type %s are not accepted", final)
	}
	return final, nil
}
