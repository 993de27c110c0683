"""Authentication: signed bearer tokens with per-bucket permissions (`tokens`), the node's
signing key (`keys`) and `getbatch token issue` (`command`). Nothing here knows HTTP;
`getbatch.server.auth` applies it to requests."""
