package evidence

import "testing"

func TestMediaFileName(t *testing.T) {
	for _, c := range []struct {
		i, n      int
		container string
		want      string
	}{
		{0, 1, ContainerFMP4, "incident.mp4"},
		{0, 1, ContainerWebM, "incident.webm"},
		{1, 3, ContainerWebM, "incident-part2.webm"},
		{2, 3, ContainerFMP4, "incident-part3.mp4"},
	} {
		if got := MediaFileName(c.i, c.n, c.container); got != c.want {
			t.Errorf("MediaFileName(%d, %d, %s) = %s", c.i, c.n, c.container, got)
		}
	}
}
