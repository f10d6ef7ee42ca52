{
  "targets": [
    {
      "target_name": "fspool_sys",
      "sources": ["native/fspool_sys.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    },
    {
      "target_name": "fspool_cfb",
      "sources": ["native/fspool_cfb.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    },
    {
      "target_name": "fspool-spawner",
      "type": "executable",
      "sources": ["native/fspool_spawner.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
