# Named counters in one array of 32-bit words. A dict of n counters holds a
# hash table of 16 bytes a slot (8 on a 32-bit board) plus its own object;
# these hold 4 bytes a counter. c["name"] += 1 works as with a dict; an
# unknown name is a KeyError; `in` as with a dict. dict(c.items()) for a
# status reply; that is all its users ask of it (each method a function
# object on the heap).
from array import array


class Counters:
    def __init__(self, names):
        self.names = names  # a tuple, usually a module constant
        self.v = array("I", bytes(4 * len(names)))

    def _i(self, k):
        try:
            return self.names.index(k)
        except ValueError:
            raise KeyError(k)

    def __getitem__(self, k):
        return self.v[self._i(k)]

    def __setitem__(self, k, x):
        self.v[self._i(k)] = x

    def __contains__(self, k):
        return k in self.names

    def items(self):
        return zip(self.names, self.v)
