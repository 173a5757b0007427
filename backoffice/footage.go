package backoffice

// Footage serves decrypted footage to reviewers.
type Footage interface{}
