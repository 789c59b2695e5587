/* hash.c: being written. */
