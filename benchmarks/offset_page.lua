-- wrk: a 20-row offset page at a random offset in 0..199, as benchmarks/load.py's list_page.
request = function()
  return wrk.format("GET", wrk.path .. "?offset=" .. math.random(0, 199) .. "&limit=20")
end
