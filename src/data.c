/* data.c: being written. */
