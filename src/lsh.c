/* lsh.c: being written. */
